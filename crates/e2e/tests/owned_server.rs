//! The attacks of issue 12 (RFD 0005) with the real binaries, each played by
//! someone who owns the server: its SQLite database, and its own code (the
//! store, which writes a job and its `job.released` log entry in one
//! transaction, so the log vouches for whatever the attacker puts there).
//! Each test checks that nothing ran (no marker file) and that a correct
//! job still runs afterwards.
//!
//! Agents that must be told apart by host name run in UTS namespaces of
//! their own (`unshare --uts`, as root), like machines on a network.
//!
//! Needs the `sqlite3` command-line tool for the tampering.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::devices::DeviceView;
use bulwark_api::jobs::JobView;
use bulwark_api::signing_keys::SigningKeyView;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{ExtraAgent, OperatorSetup, decode_json, sql_text, target_of, wait_for};
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::{
    ActionClass, Interpreter, JobAction, JobStatement, JobTarget, Limits, Signed,
};
use bulwark_store::{JobState, NewJob, Store};
use ed25519_dalek::SigningKey;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "e2e owned server: a long passphrase nobody guesses";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random numbers");
    bytes
}

/// One operator's key, stolen: listed in demo's policy for every class by
/// the root holders (with the CLI) and registered to the owner's account.
async fn stolen_operator_key(s: &OperatorSetup) -> Result<SigningKey> {
    let key = SigningKey::from_bytes(&random::<32>());
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
            "mallory",
        ],
        None,
    )
    .await?
    .ok()?;
    let _: SigningKeyView = s
        .api
        .post_as(
            "/api/v1/signing-keys",
            &json!({ "name": "mallory", "public_key": B64.encode(key.verifying_key().to_bytes()) }),
        )
        .await?;
    Ok(key)
}

/// A device as the server lists it now.
async fn device_view(s: &OperatorSetup, tenant: &str, id: &str) -> Result<DeviceView> {
    s.api
        .devices(tenant)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .with_context(|| format!("no device {id} in {tenant}"))
}

/// What the attacker does with the server's own code: stores `envelope`
/// as an approved job for `device`, which appends its `job.released`
/// entry to the tenant's log in the same transaction. The server then
/// delivers it with a valid inclusion proof under a head its key signs.
async fn release_as_owned_server(
    s: &OperatorSetup,
    envelope: &Signed,
    script: &[u8],
    device: &str,
) -> Result<String> {
    let job: JobStatement = envelope
        .statement(&Limits::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::open_sqlite(&s.up.data_dir().join("bulwark.db")).await?;
    let id = hex::encode(job.job_id);
    let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000;
    store
        .create_job(
            &NewJob {
                id: id.clone(),
                tenant_id: job.tenant.clone(),
                requested_by: s.sql("SELECT id FROM operators LIMIT 1")?,
                class: job.class.name().to_owned(),
                reason: job.reason.clone(),
                script: script.to_vec(),
                script_sha256: Sha256::digest(script).into(),
                envelope: envelope.to_bytes(),
                signed_sha256: envelope.digest(),
                not_before: ms(job.not_before),
                expires_at: ms(job.expires_at),
                state: JobState::Approved,
                signed_with: Vec::new(),
            },
            &[device.to_owned()],
            ms(now_secs()),
            &[],
        )
        .await?;
    store.close().await;
    Ok(id)
}

/// `bulwark job run --no-wait` of the marker script `name` on `targets`.
async fn submit_to(
    s: &OperatorSetup,
    tenant: &str,
    targets: &str,
    name: &str,
) -> Result<(String, std::path::PathBuf)> {
    let (script, marker) = s.script(name)?;
    let script = script.display().to_string();
    let out = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                tenant,
                "--targets",
                targets,
                "--script",
                &script,
                "--reason",
                "e2e",
                "--no-wait",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    Ok((view.id, marker))
}

/// Drill attack 1: a script labelled `inventory-refresh` (quorum 1) while
/// run-script needs two signers. The server's own check refuses it at the
/// desk; written into the database and the log by the owned server, the
/// agent derives the class from the payload and refuses it.
#[tokio::test]
async fn a_relabelled_class_runs_nothing() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    s.require_two_signers().await?;
    let mallory = stolen_operator_key(&s).await?;
    let hostname = device_view(&s, "demo", &device).await?.hostname;
    let (script_path, marker) = s.script("relabelled")?;
    let script = std::fs::read(&script_path)?;
    let now = now_secs();
    let statement = JobStatement {
        tenant: s.sql("SELECT id FROM tenants WHERE name = 'demo'")?,
        job_id: random(),
        targets: vec![JobTarget {
            device_id: device.clone(),
            hostname,
            device_key: None,
        }],
        class: ActionClass::InventoryRefresh,
        action: JobAction::RunScript {
            interpreter: Interpreter::Sh,
            script_sha256: ScriptHash(Sha256::digest(&script).into()),
        },
        not_before: now - 60,
        expires_at: now + 3600,
        nonce: random(),
        reason: "routine inventory".into(),
        timeout_secs: 60,
        tenant_name: "demo".into(),
    };
    let mut envelope = Signed::new(&statement);
    envelope.sign(&mallory);

    let reply = s
        .api
        .call(
            Method::POST,
            "/api/v1/tenants/demo/jobs",
            Some(&json!({
                "envelope": B64.encode(envelope.to_bytes()),
                "script": String::from_utf8(script.clone())?,
            })),
        )
        .await?;
    ensure!(
        reply.status == 400 && reply.body.to_string().contains("run-script"),
        "the server accepted a relabelled job: {} {}",
        reply.status,
        reply.body
    );

    // Before the attack, the log's meaning replays: every statement and
    // every released job as the agents' rules accept them.
    s.cli(&["audit", "verify", "--tenant", "demo"], None)
        .await?
        .ok()?;
    victim.stop().await?;
    let id = release_as_owned_server(&s, &envelope, &script, &device).await?;
    victim.resume()?;
    s.expect_refused(&id, &device, "class_mismatch", &marker)
        .await?;
    // The tree is sound (the owned server signed it), but an auditor who
    // replays it finds a job released that no one requested.
    let audit = s
        .cli(&["audit", "verify", "--tenant", "demo"], None)
        .await?;
    ensure!(
        !audit.success() && format!("{}{}", audit.stdout, audit.stderr).contains("never requested"),
        "audit verify passed a release without a request:\n{}\n{}",
        audit.stdout,
        audit.stderr
    );

    // A correct job still runs: an inventory refresh (no script, quorum 1).
    let out = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &device,
                "--inventory-refresh",
                "--reason",
                "e2e",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    let target = target_of(&view, &device)?;
    ensure!(
        target.state == "succeeded" && view.class == "inventory-refresh",
        "the inventory refresh did not succeed: {view:?}"
    );
    Ok(())
}

/// Drill attack 5: the server swaps two devices' host names, so the
/// operator's `--targets ws-alpha` resolves to ws-bravo's device id. The
/// signed target names ws-alpha; ws-bravo's agent refuses it.
#[tokio::test]
async fn swapped_hostnames_run_nothing() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let gateway = s.up.info.gateway_url.clone();
    let alpha = ExtraAgent::start_as(Some("ws-alpha"), &s.api, &gateway, "demo").await?;
    let bravo = ExtraAgent::start_as(Some("ws-bravo"), &s.api, &gateway, "demo").await?;
    ensure!(
        device_view(&s, "demo", &alpha.device_id).await?.hostname == "ws-alpha",
        "the agent in its own UTS namespace did not enrol as ws-alpha"
    );
    // An agent's inventory report writes its hostname back (the server's
    // record follows the device). The attacker's edit must be in place
    // when the CLI resolves the name: wait for both first reports, then
    // redo the edit until the submission saw it.
    for agent in [&alpha, &bravo] {
        wait_for(Duration::from_secs(60), "the first inventory", async || {
            Ok(s.api.device(&agent.device_id).await?.inventory.map(|_| ()))
        })
        .await?;
    }
    let names = |a: &str, b: &str| {
        format!(
            "UPDATE devices SET hostname = CASE id WHEN '{}' THEN '{a}' ELSE '{b}' END \
             WHERE id IN ('{}', '{}')",
            alpha.device_id, alpha.device_id, bravo.device_id
        )
    };
    let submit_named = async |name: &str| {
        wait_for(
            Duration::from_secs(60),
            "a submission that saw the edited names",
            async || {
                s.sql(&names(
                    if name.ends_with("after") {
                        "ws-alpha"
                    } else {
                        "ws-bravo"
                    },
                    if name.ends_with("after") {
                        "ws-bravo"
                    } else {
                        "ws-alpha"
                    },
                ))?;
                match submit_to(&s, "demo", "ws-alpha", name).await {
                    Ok(sent) => Ok(Some(sent)),
                    Err(e) if format!("{e:#}").contains("no device") => Ok(None),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    };

    let (id, marker) = submit_named("for-alpha").await?;
    let view = s.job_view(&id).await?;
    ensure!(
        view.targets.len() == 1 && target_of(&view, &bravo.device_id).is_ok(),
        "the swapped name did not send the job to ws-bravo's device: {view:?}"
    );
    s.expect_refused(&id, &bravo.device_id, "target_mismatch", &marker)
        .await?;

    // An agent's report may write a name back between the edit and the
    // CLI's reading: redo the edit until the CLI saw it.
    let submit_after = async |alpha_name: &str, bravo_name: &str, target: &str, script: &str| {
        for _ in 0..20 {
            s.sql(&names(alpha_name, bravo_name))?;
            match submit_to(&s, "demo", target, script).await {
                Err(e)
                    if format!("{e:#}").contains("no device")
                        || format!("{e:#}").contains("several devices") =>
                {
                    continue;
                }
                other => return Ok(other),
            }
        }
        bail!("the edited names never held long enough for a submission")
    };

    // Names put back: the CLI met ws-alpha for the first time during the
    // attack and pinned the device it was shown, so the true answer now
    // stops it, naming both devices; nothing is signed.
    let stopped = submit_after("ws-alpha", "ws-bravo", "ws-alpha", "alpha-stopped").await?;
    let message = format!(
        "{:#}",
        stopped.err().context("the CLI signed against its pin")?
    );
    ensure!(
        message.contains("STOP") && message.contains(&alpha.device_id),
        "the CLI did not stop on a host name pinned to another device: {message}"
    );
    // The way out: the operator reads ws-alpha's key hash on the machine
    // itself and pins it. A server answering with another machine pins
    // nothing; the true answer replaces the wrong pin, and the operator's
    // job for ws-alpha runs on ws-alpha.
    let status = std::process::Command::new(bulwark_e2e::agent_bin()?)
        .arg("--state-dir")
        .arg(alpha.state_dir.path())
        .arg("status")
        .output()?;
    let status = String::from_utf8(status.stdout)?;
    let alpha_key = status
        .lines()
        .find_map(|l| l.strip_prefix("key hash: "))
        .context("`bulwark-agent status` printed no key hash")?
        .trim()
        .to_owned();
    let refused = s
        .cli(
            &[
                "device",
                "pin",
                &bravo.device_id,
                "--tenant",
                "demo",
                "--key",
                &alpha_key,
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success() && refused.stderr.contains("Nothing was pinned"),
        "pinned a key the server shows for another machine: {refused:?}"
    );
    s.sql(&names("ws-alpha", "ws-bravo"))?;
    let pinned = s
        .cli(
            &[
                "device", "pin", "ws-alpha", "--tenant", "demo", "--key", &alpha_key,
            ],
            None,
        )
        .await?
        .ok()?
        .stdout;
    ensure!(
        pinned.contains("Unpinned ws-alpha") && pinned.contains(&alpha_key),
        "{pinned}"
    );
    let listed = s
        .cli(&["device", "pins", "--tenant", "demo"], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        listed.contains(&alpha.device_id) && listed.contains(&alpha_key),
        "{listed}"
    );
    let (id, marker) = submit_named("alpha-after").await?;
    let target = s.wait_final(&id, &alpha.device_id).await?;
    ensure!(
        target.state == "succeeded" && marker.exists(),
        "the correct job did not run on ws-alpha: {target:?}"
    );

    // With ws-alpha pinned, the same swap stops the CLI before it signs.
    let message = match submit_after("ws-bravo", "ws-alpha", "ws-alpha", "alpha-pinned").await? {
        Ok((id, _)) => bail!("the CLI signed job {id} for a swapped host name it had pinned"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        message.contains("STOP") && message.contains(&bravo.device_id),
        "the CLI did not name the device the server swapped in: {message}"
    );

    // A device's key swapped in the database (a machine the attacker holds,
    // under ws-alpha's id) stops the CLI however the device is named.
    s.sql(&names("ws-alpha", "ws-bravo"))?;
    s.sql(&format!(
        "UPDATE devices SET public_key = X'{}' WHERE id = '{}'",
        "66".repeat(32),
        alpha.device_id
    ))?;
    let message = match submit_to(&s, "demo", &alpha.device_id, "alpha-rekeyed").await {
        Ok((id, _)) => bail!("the CLI signed job {id} for a device whose key the server swapped"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        message.contains("STOP") && message.contains("this machine pinned key"),
        "the CLI did not stop on a swapped device key: {message}"
    );
    Ok(())
}

/// The server swaps two tenants' names, so the operator's `--tenant demo`
/// resolves to another customer's tenant (where the same operator key is
/// listed) and a device of the same host name there. An operator whose CLI
/// pinned demo is stopped by the pin; one meeting demo for the first time
/// during the attack signs a job that names tenant "demo", which the other
/// tenant's agent refuses (its policy is signed for "other").
#[tokio::test]
async fn a_job_naming_another_tenant_runs_nothing() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let gateway = s.up.info.gateway_url.clone();
    let _: TenantView = s
        .api
        .post_as("/api/v1/tenants", &json!({ "name": "other" }))
        .await?;
    s.cli(&["tenant", "init", "--tenant", "other"], None)
        .await?
        .ok()?;
    s.cli(&["policy", "show", "--tenant", "demo"], None)
        .await?
        .ok()?;
    let theirs = ExtraAgent::start_as(Some("ws-shared"), &s.api, &gateway, "other").await?;
    let ours = ExtraAgent::start_as(Some("ws-shared"), &s.api, &gateway, "demo").await?;
    let swap = "UPDATE tenants SET name = 'swapping' WHERE name = 'demo'; \
                UPDATE tenants SET name = 'demo' WHERE name = 'other'; \
                UPDATE tenants SET name = 'other' WHERE name = 'swapping';";
    s.sql(swap)?;

    // The operator's pins stop the CLI before it signs anything.
    let (script, marker) = s.script("for-demo")?;
    let script = script.display().to_string();
    let stopped = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                "ws-shared",
                "--script",
                &script,
                "--no-wait",
                "--json",
            ],
            None,
        )
        .await?;
    ensure!(
        !stopped.success() && stopped.stderr.contains("another customer's tenant"),
        "the CLI signed for a tenant its pin does not name:\n{}",
        stopped.stderr
    );

    // An operator meeting demo for the first time, during the attack.
    std::fs::remove_dir_all(s.config.join("pins"))?;
    let (id, _) = submit_to(&s, "demo", "ws-shared", "for-demo").await?;
    s.expect_refused(&id, &theirs.device_id, "wrong_tenant", &marker)
        .await?;

    s.sql(swap)?;
    std::fs::remove_dir_all(s.config.join("pins"))?;
    let (id, marker) = submit_to(&s, "demo", "ws-shared", "demo-after").await?;
    let target = s.wait_final(&id, &ours.device_id).await?;
    ensure!(
        target.state == "succeeded" && marker.exists(),
        "the correct job did not run on demo's ws-shared: {target:?}"
    );
    Ok(())
}

/// `bulwark job approve` shows what it signs from the statement's bytes:
/// the server's JSON says "inventory-refresh", a harmless reason and
/// another host name; the approver reads the signed class, reason and host.
#[tokio::test]
async fn job_approve_shows_the_statement_not_the_servers_json() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let hostname = device_view(&s, "demo", &device).await?.hostname;
    s.require_two_signers().await?;
    victim.stop().await?;
    let (id, _marker) = s.submit(&device, "needs-review", &[]).await?;
    s.sql(&format!(
        "UPDATE jobs SET reason = 'harmless printer check', class = 'inventory-refresh' WHERE id = {}",
        sql_text(&id)
    ))?;
    s.sql(&format!(
        "UPDATE devices SET hostname = 'printer-7' WHERE id = {}",
        sql_text(&device)
    ))?;
    let lied = s.job_view(&id).await?;
    ensure!(
        lied.reason == "harmless printer check",
        "the tampering did not reach the API: {lied:?}"
    );
    // The requester may not approve their own job: the server refuses the
    // signature, after the CLI has shown what it signs.
    let out = s.cli(&["job", "approve", &id, "--yes"], None).await?;
    let shown = out.stdout.clone();
    for expected in [
        "Reason     e2e",
        "Class      run-script",
        "run a sh script",
        hostname.as_str(),
    ] {
        ensure!(
            shown.contains(expected),
            "`job approve` did not show {expected:?}:\n{shown}"
        );
    }
    for lie in ["harmless", "printer-7", "inventory-refresh"] {
        ensure!(
            !shown.contains(lie),
            "`job approve` showed the server's {lie:?}:\n{shown}"
        );
    }
    Ok(())
}

/// Drill attack 4: the owned server serves demo with a root and policy of
/// the attacker's (self-consistent, so they verify as a chain) and issues
/// tokens naming that root. The operator's CLI pinned demo on first
/// contact and stops; an agent given the pinned `--root` refuses the token.
/// With the root put back, the CLI's install command (root and log key
/// from its pins) enrols an agent that runs a correct job.
#[tokio::test]
async fn an_enrolment_token_for_another_root_is_refused() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    // First contact pins demo on the operator's machine.
    s.cli(&["policy", "show", "--tenant", "demo"], None)
        .await?
        .ok()?;
    let demo = s.sql("SELECT id FROM tenants WHERE name = 'demo'")?;
    let original_root = s.sql(&format!(
        "SELECT hex(envelope) FROM trust_statements WHERE tenant_id = {} AND kind = 'root' AND version = 1",
        sql_text(&demo)
    ))?;
    let limits = Limits::default();
    let honest_root = Signed::from_bytes(&bulwark_e2e::decode_hex(&original_root)?, &limits)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pinned = hex::encode(bulwark_policy::root::root_fingerprint(&honest_root));

    // The attacker's root v1 for demo's id, and a newer policy it signs.
    let attacker = SigningKey::from_bytes(&random::<32>());
    let root = bulwark_policy::TrustRoot {
        tenant: demo.clone(),
        version: 1,
        threshold: 1,
        keys: vec![bulwark_policy::RootKey {
            key: bulwark_policy::PublicKey::Ed25519(attacker.verifying_key().to_bytes()),
            holder: bulwark_policy::Holder::Msp,
            name: "not yours".into(),
        }],
    };
    let mut forged_root = Signed::new(&root);
    forged_root.sign(&attacker);
    let latest_policy = s.sql(&format!(
        "SELECT hex(envelope) FROM trust_statements WHERE tenant_id = {} AND kind = 'policy' ORDER BY version DESC LIMIT 1",
        sql_text(&demo)
    ))?;
    let mut policy: bulwark_policy::Policy =
        Signed::from_bytes(&bulwark_e2e::decode_hex(&latest_policy)?, &limits)
            .and_then(|p| p.statement(&limits))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    policy.version += 1;
    let mut forged_policy = Signed::new(&policy);
    forged_policy.sign(&attacker);
    s.sql(&format!(
        "UPDATE trust_statements SET envelope = X'{}' WHERE tenant_id = {} AND kind = 'root' AND version = 1; \
         INSERT INTO trust_statements (tenant_id, kind, version, envelope, created_by, created_at) \
         VALUES ({}, 'policy', {}, X'{}', NULL, 0);",
        hex::encode(forged_root.to_bytes()),
        sql_text(&demo),
        sql_text(&demo),
        policy.version,
        hex::encode(forged_policy.to_bytes()),
    ))?;

    // The operator's CLI stops: the served root is not the pinned one.
    let refused = s
        .cli(&["tenant", "enroll-token", "--tenant", "demo"], None)
        .await?;
    ensure!(
        !refused.success()
            && refused.stderr.contains("STOP")
            && refused.stderr.contains("trust root"),
        "enroll-token did not stop on another root:\n{}\n{}",
        refused.stdout,
        refused.stderr
    );
    // A token the owned server issues names the attacker's root; the agent,
    // given the root the operator pinned, refuses it before sending anything.
    let token = s.api.issue_token("demo").await?;
    let state_dir = tempfile::tempdir()?;
    let mut enroll = tokio::process::Command::new(bulwark_e2e::agent_bin()?);
    enroll
        .args([
            "enroll",
            "--server",
            &s.up.info.gateway_url,
            "--token",
            &token,
        ])
        .args(["--root", &pinned])
        .arg("--state-dir")
        .arg(state_dir.path());
    let out = bulwark_e2e::run_command(enroll, None, std::time::Duration::from_secs(60)).await?;
    ensure!(
        !out.success() && out.stderr.contains("--root"),
        "the agent enrolled with a token naming another root:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    ensure!(
        !state_dir.path().join("agent.json").exists(),
        "the refused enrolment left an identity behind"
    );

    // Root and policy put back: the CLI's install command enrols an agent.
    s.sql(&format!(
        "UPDATE trust_statements SET envelope = X'{original_root}' WHERE tenant_id = {} AND kind = 'root' AND version = 1; \
         DELETE FROM trust_statements WHERE tenant_id = {} AND kind = 'policy' AND version = {};",
        sql_text(&demo),
        sql_text(&demo),
        policy.version
    ))?;
    let issued = s
        .cli(
            &["tenant", "enroll-token", "--tenant", "demo", "--json"],
            None,
        )
        .await?
        .ok()?;
    let issued: Value = serde_json::from_str(&issued.stdout)?;
    let command = issued["install_command"]
        .as_str()
        .context("install_command")?;
    ensure!(
        command.contains(&format!("--root {pinned}")) && command.contains("--log-key "),
        "the install command does not carry the pins: {command}"
    );
    // `sudo bulwark-agent install ...`, laid out under the temporary
    // directory (systemd is not the init here).
    let args: Vec<&str> = command.split_whitespace().skip(2).collect();
    let mut install = tokio::process::Command::new(bulwark_e2e::agent_bin()?);
    for arg in &args {
        install.arg(arg.replace("https://GATEWAY:PORT", &s.up.info.gateway_url));
    }
    install.arg("--root-dir").arg(state_dir.path());
    bulwark_e2e::run_command(install, None, std::time::Duration::from_secs(60))
        .await?
        .ok()?;
    let installed = state_dir.path().join("var/lib/bulwark-agent");
    let _agent = bulwark_e2e::spawn_agent(&installed)?;
    let device: String = serde_json::from_str::<Value>(&std::fs::read_to_string(
        installed.join("agent.json"),
    )?)?["device_id"]
        .as_str()
        .context("device_id")?
        .to_owned();
    s.good_job_runs(&device, "after-enrolment").await?;
    Ok(())
}
