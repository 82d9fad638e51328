//! Signed jobs end to end (RFD 0002, issue 5): `bulwark up` with its demo
//! trust root, the operator CLI signing jobs on this machine, real agents
//! running them, and the attacks of issue 5 made by rewriting the server's
//! SQLite database behind its back. Whatever the database says, an agent
//! runs only what the tenant's policy lets it run, and its refusal reaches
//! the server.
//!
//! Needs the `sqlite3` command-line tool for the tampering.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::jobs::JobView;
use bulwark_api::operators::InvitationCreated;
use bulwark_api::setup::SetupResponse;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{
    ExtraAgent, OperatorSetup, Owner, decode_hex, decode_json, sql_text, target_of, wait_for,
};
use serde_json::json;

const PASSPHRASE: &str = "e2e signed jobs: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(30);

/// One `bulwark up`, its owner logged in with the CLI, and a scratch directory.
struct Setup(OperatorSetup);

impl std::ops::Deref for Setup {
    type Target = OperatorSetup;

    fn deref(&self) -> &OperatorSetup {
        &self.0
    }
}

impl Setup {
    async fn start() -> Result<Self> {
        Ok(Self(OperatorSetup::start(PASSPHRASE).await?))
    }

    async fn alerts(&self) -> Result<Vec<String>> {
        Ok(self
            .api
            .audit("demo")
            .await?
            .into_iter()
            .filter(|e| e.action == "alert.trust_refused")
            // Target: the statement ("policy v2"); detail: the agent's reason.
            .map(|e| e.detail)
            .collect())
    }

    /// Waits for an `alert.trust_refused` event whose detail names `code`.
    async fn expect_alert(&self, code: &str) -> Result<String> {
        let needle = format!("({code})");
        wait_for(
            WAIT,
            &format!("an alert.trust_refused with {code}"),
            async || {
                Ok(self
                    .alerts()
                    .await?
                    .into_iter()
                    .find(|d| d.contains(&needle)))
            },
        )
        .await
    }

    /// `bulwark policy add-operator` in demo: `key` names the key
    /// (`--public-key HEX`, `--passkey NAME`, …), listed as `name`.
    async fn add_operator(&self, name: &str, key: &[&str]) -> Result<()> {
        let mut args = vec!["policy", "add-operator", "--tenant", "demo"];
        args.extend_from_slice(key);
        args.extend_from_slice(&["--name", name]);
        self.cli(&args, None).await?.ok()?;
        Ok(())
    }

    /// A new local key in this setup's store, registered with the server as the owner's.
    async fn new_key(&self, name: &str) -> Result<String> {
        self.cli(&["keys", "new", "--name", name], None)
            .await?
            .ok()?;
        self.cli(&["keys", "register", "--name", name], None)
            .await?
            .ok()?;
        let out = self
            .cli(&["keys", "export", "--name", name], None)
            .await?
            .ok()?;
        Ok(out.stdout.trim().to_owned())
    }
}

#[tokio::test]
async fn signed_job_runs_on_the_local_agent() -> Result<()> {
    let s = Setup::start().await?;
    let view = s.good_job_runs(&s.local, "happy").await?;
    let id = view.id;
    let shown: JobView = s.cli_as(&["job", "show", &id, "--json"]).await?;
    let target = target_of(&shown, &s.local)?;
    ensure!(
        target.state == "succeeded" && target.exit_code == Some(0),
        "job show: {shown:?}"
    );
    ensure!(
        target
            .stdout
            .as_deref()
            .is_some_and(|o| o.contains("hello from happy")),
        "job show: {shown:?}"
    );
    ensure!(shown.state == "approved", "job show: {shown:?}");
    // The device page tells which trust statements the agent holds.
    let device = s.api.device(&s.local).await?;
    ensure!(
        device
            .trust
            .as_ref()
            .is_some_and(|t| t.root_version == 1 && t.policy_version == 1 && !t.frozen),
        "device trust: {device:?}"
    );
    // `--all`: every device of the tenant (here the one), a one-line command.
    let all: JobView = s
        .cli_as(&[
            "job",
            "run",
            "--tenant",
            "demo",
            "--all",
            "--command",
            "echo hello to all",
            "--reason",
            "e2e",
            "--json",
        ])
        .await?;
    let target = target_of(&all, &s.local)?;
    ensure!(
        all.targets.len() == 1
            && target.state == "succeeded"
            && target
                .stdout
                .as_deref()
                .is_some_and(|o| o.contains("hello to all")),
        "job run --all: {all:?}"
    );
    let both = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--all",
                "--targets",
                &s.local,
                "--command",
                "true",
            ],
            None,
        )
        .await?;
    ensure!(
        !both.success() && both.stderr.contains("cannot be used with"),
        "--all with --targets: {both:?}"
    );
    Ok(())
}

#[tokio::test]
async fn server_database_rewritten_runs_nothing() -> Result<()> {
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();

    // (a) A job signed by a key the policy does not list, marked approved in the database.
    s.new_key("attacker").await?;
    victim.stop().await?;
    let (evil, evil_marker) = s.submit(&device, "evil", &["--key", "attacker"]).await?;
    ensure!(
        s.job_view(&evil).await?.state == "pending",
        "the server approved a job signed by a key outside the policy"
    );
    s.sql(&format!(
        "UPDATE jobs SET state = 'approved' WHERE id = {}",
        sql_text(&evil)
    ))?;
    // (b) The operator's stored public key swapped for the attacker's: agents trust the policy.
    let original = s.sql("SELECT hex(public_key) FROM signing_keys WHERE name = 'operator'")?;
    s.sql(
        "UPDATE signing_keys SET public_key = (SELECT public_key FROM signing_keys WHERE name = 'attacker') WHERE name = 'operator'",
    )?;
    victim.resume()?;
    s.expect_refused(&evil, &device, "unknown_key", &evil_marker)
        .await?;
    // The server checks a requester's signature against this table: put the
    // operator's key back so correct jobs can be submitted again.
    s.sql(&format!(
        "UPDATE signing_keys SET public_key = X'{original}' WHERE name = 'operator'"
    ))?;

    // (c) A newer policy row signed by a root the attacker made: refused,
    // and a correct job still runs under the old policy.
    victim.stop().await?;
    let (good, good_marker) = s.submit(&device, "good-after-forgery", &[]).await?;
    forge_policy(&s).await?;
    victim.resume()?;
    s.expect_alert("root_threshold_not_met").await?;
    // While the forged row is there the server's own views of demo's jobs
    // fail (it re-verifies the stored policy: HTTP 500), so read the result
    // in the database, then remove the forgery and read it through the API.
    wait_for(
        WAIT,
        "the correct job's result in the database",
        async || {
            Ok((s.sql(&format!(
                "SELECT state FROM job_targets WHERE job_id = {}",
                sql_text(&good)
            ))? == "succeeded")
                .then_some(()))
        },
    )
    .await?;
    s.sql("DELETE FROM trust_statements WHERE kind = 'policy' AND version = 2")?;
    let target = s.wait_final(&good, &device).await?;
    ensure!(
        target.state == "succeeded" && good_marker.exists(),
        "the correct job did not run under the old policy: {target:?}"
    );
    Ok(())
}

/// Adds a demo policy row one version above the latest: the same policy,
/// re-signed by a key the attacker made (not a root key of demo).
async fn forge_policy(s: &Setup) -> Result<()> {
    let (version, forged) = statements::forged_policy(s, 1, 0x66)?;
    statements::insert_statement(s, "policy", version, &forged)
}

/// A job delivered again after it ran (the attacker rewinds its target to
/// waiting) does not run again and is not refused: the agent answers with
/// the result it recorded, the same output and times (issue 19: it used to
/// answer "replayed", which hid what the job had done).
#[tokio::test]
async fn replayed_job_runs_once() -> Result<()> {
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let view = s.good_job_runs(&device, "once").await?;
    let id = view.id.clone();
    let first = target_of(&view, &device)?;
    let marker = s.work.path().join("once.marker");
    std::fs::remove_file(&marker)?;
    let rewind = |columns: &str| {
        s.sql(&format!(
            "UPDATE job_targets SET state = 'waiting', {columns} WHERE job_id = {}",
            sql_text(&id)
        ))
    };
    let answered_as_before = async || -> Result<()> {
        let again = s.wait_final(&id, &device).await?;
        for (field, same) in [
            ("state", again.state == first.state),
            ("exit_code", again.exit_code == first.exit_code),
            ("stdout", again.stdout == first.stdout),
            ("started_at", again.started_at == first.started_at),
            ("finished_at", again.finished_at == first.finished_at),
        ] {
            ensure!(
                same,
                "{field} differs from the first run: {again:?} vs {first:?}"
            );
        }
        ensure!(!marker.exists(), "the job ran again");
        Ok(())
    };

    // Back to waiting, delivered again on the next nudge (another job).
    rewind("exit_code = NULL, stdout = NULL, stderr = NULL, output_sha256 = NULL")?;
    s.good_job_runs(&device, "nudge").await?;
    answered_as_before().await?;

    // And after the agent restarts (its history and results are on disk).
    victim.stop().await?;
    rewind("exit_code = NULL, stdout = NULL, stderr = NULL, output_sha256 = NULL")?;
    victim.resume()?;
    answered_as_before().await?;
    s.good_job_runs(&device, "after-replay").await?;
    Ok(())
}

#[tokio::test]
async fn swapped_script_body_is_refused() -> Result<()> {
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    victim.stop().await?;
    let (id, _) = s.submit(&device, "innocent", &[]).await?;
    let evil_marker = s.work.path().join("swapped.marker");
    let evil = format!("#!/bin/sh\ntouch '{}'\n", evil_marker.display());
    s.sql(&format!(
        "UPDATE jobs SET script = CAST({} AS BLOB) WHERE id = {}",
        sql_text(&evil),
        sql_text(&id)
    ))?;
    victim.resume()?;
    s.expect_refused(&id, &device, "script_mismatch", &evil_marker)
        .await?;
    ensure!(
        !s.work.path().join("innocent.marker").exists(),
        "the signed script ran although the body was swapped"
    );
    s.good_job_runs(&device, "after-swap").await?;
    Ok(())
}

#[tokio::test]
async fn revoked_key_is_refused() -> Result<()> {
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let public = s.new_key("leaver").await?;
    s.add_operator("leaver", &["--public-key", &public]).await?;
    s.good_job_runs(&device, "while-listed").await?;
    victim.stop().await?;
    let (id, marker) = s
        .submit(&device, "leaver-job", &["--key", "leaver"])
        .await?;
    s.cli(
        &[
            "policy",
            "remove-operator",
            "--tenant",
            "demo",
            "--name",
            "leaver",
        ],
        None,
    )
    .await?
    .ok()?;
    s.sql(&format!(
        "UPDATE jobs SET state = 'approved' WHERE id = {}",
        sql_text(&id)
    ))?;
    victim.resume()?;
    s.expect_refused(&id, &device, "unknown_key", &marker)
        .await?;
    s.good_job_runs(&device, "after-revocation").await?;
    Ok(())
}

#[tokio::test]
async fn policy_rollback_is_refused() -> Result<()> {
    let s = Setup::start().await?;
    let public = s.new_key("second").await?;
    s.add_operator("second", &["--public-key", &public]).await?;
    // The local agent takes v2.
    let local = s.local.clone();
    wait_for(WAIT, "the local agent to hold policy v2", async || {
        Ok((s.sql(&format!(
            "SELECT policy_version FROM device_trust WHERE device_id = {}",
            sql_text(&local)
        ))? == "2")
            .then_some(()))
    })
    .await?;
    s.sql("DELETE FROM trust_statements WHERE kind = 'policy' AND version = 2 AND tenant_id = (SELECT id FROM tenants WHERE name = 'demo')")?;
    // A new job nudges the agent, which is sent v1 again.
    s.good_job_runs(&s.local, "after-rollback").await?;
    s.expect_alert("rollback").await?;
    Ok(())
}

#[tokio::test]
async fn one_compromised_operator_needs_a_second() -> Result<()> {
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();

    // A technician of demo, with a key of their own on their own machine,
    // listed by the owner; run-script needs two signers.
    let tech_config = listed_technician(&s).await?;
    s.require_two_signers().await?;

    // One signature, forced to approved in the database: refused.
    victim.stop().await?;
    let (id, marker) = s.submit(&device, "one-signer", &[]).await?;
    let view = s.job_view(&id).await?;
    ensure!(
        view.state == "pending",
        "one signature approved a 2-signer job: {view:?}"
    );
    s.sql(&format!(
        "UPDATE jobs SET state = 'approved' WHERE id = {}",
        sql_text(&id)
    ))?;
    victim.resume()?;
    s.expect_refused(&id, &device, "too_few_signers", &marker)
        .await?;

    // The technician's signature makes a new job run.
    victim.stop().await?;
    let (id, marker) = s.submit(&device, "two-signers", &[]).await?;
    s.cli_in(
        &tech_config,
        &["job", "approve", &id, "--key", "tech", "--yes"],
        None,
    )
    .await?
    .ok()?;
    let view = s.job_view(&id).await?;
    ensure!(
        view.state == "approved",
        "two signatures did not approve the job: {view:?}"
    );
    victim.resume()?;
    let target = s.wait_final(&id, &device).await?;
    ensure!(
        target.state == "succeeded" && marker.exists(),
        "the job with two signatures did not run: {target:?}"
    );
    Ok(())
}

#[tokio::test]
async fn frozen_tenant_refuses_until_unfrozen() -> Result<()> {
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    victim.stop().await?;
    let (id, marker) = s.submit(&device, "while-frozen", &[]).await?;
    s.cli(
        &[
            "tenant", "freeze", "--tenant", "demo", "--reason", "e2e test",
        ],
        None,
    )
    .await?
    .ok()?;
    victim.resume()?;
    s.expect_refused(&id, &device, "frozen", &marker).await?;
    s.cli(
        &["tenant", "unfreeze", "--tenant", "demo", "--reason", "ok"],
        None,
    )
    .await?
    .ok()?;
    s.good_job_runs(&device, "after-unfreeze").await?;
    Ok(())
}

#[tokio::test]
async fn cross_tenant_job_is_refused() -> Result<()> {
    let s = Setup::start().await?;
    let _: TenantView = s
        .api
        .post_as("/api/v1/tenants", &json!({ "name": "other" }))
        .await?;
    s.cli(&["tenant", "init", "--tenant", "other"], None)
        .await?
        .ok()?;
    let mut other = ExtraAgent::start(&s.api, &s.up.info.gateway_url, "other").await?;
    let other_device = other.device_id.clone();
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    victim.stop().await?;
    other.stop().await?;
    let (id, marker) = s.submit(&device, "demo-only", &[]).await?;
    // The demo job, also targeted at the other tenant's device (foreign keys off).
    s.sql(&format!(
        "INSERT INTO job_targets (job_id, device_id, tenant_id, state) \
         SELECT job_id, {}, (SELECT tenant_id FROM devices WHERE id = {}), 'waiting' FROM job_targets WHERE job_id = {}",
        sql_text(&other_device),
        sql_text(&other_device),
        sql_text(&id)
    ))?;
    other.resume()?;
    s.expect_refused(&id, &other_device, "wrong_tenant", &marker)
        .await?;
    // Both agents still run their own tenant's correct jobs.
    victim.resume()?;
    let target = s.wait_final(&id, &device).await?;
    ensure!(
        target.state == "succeeded" && marker.exists(),
        "demo's own job did not run on demo's device: {target:?}"
    );
    s.good_job_runs(&device, "demo-after").await?;
    Ok(())
}

// ---- passkey approvals (issue 5) ----

/// A technician of demo, `tech`, invited through the API, signed in with
/// the CLI in its own configuration directory, with its own key `tech`
/// listed in demo's policy. Returns its configuration directory.
async fn listed_technician(s: &Setup) -> Result<PathBuf> {
    let tech_password = "technician password, long enough";
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
            &json!({ "token": invite.token, "password": tech_password }),
        )
        .await?;
    let tech = Owner::new("tech", tech_password, &redeemed.totp_secret);
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
        Some(&format!("{tech_password}\n")),
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
    s.add_operator("tech", &["--public-key", &public]).await?;
    Ok(config)
}

#[path = "support/browser.rs"]
mod browser;

/// Where the job page's screenshot goes, relative to the workspace root.
const JOB_SCREENSHOT: &str = "docs/screenshots/job.png";
/// And the approval page's, which the approver's own `bulwark` serves.
const APPROVAL_SCREENSHOT: &str = "docs/screenshots/approval.png";

/// `bulwark ARGS` in the background: it serves its approval page until the
/// person uses it.
fn cli_background(s: &Setup, args: &[&str]) -> Result<bulwark_e2e::Proc> {
    let mut command = std::process::Command::new(bulwark_e2e::bulwark_bin()?);
    command
        .args(args)
        .env("BULWARK_CONFIG_DIR", &s.config)
        .env("BULWARK_KEY_PASSPHRASE", PASSPHRASE)
        .env("NO_COLOR", "1")
        .env_remove("BULWARK_SERVER")
        .env_remove("BROWSER");
    bulwark_e2e::Proc::spawn(&format!("bulwark {}", args.join(" ")), &mut command)
}

/// The address of the approval page a background `bulwark` printed.
async fn page_url(proc: &bulwark_e2e::Proc) -> Result<String> {
    wait_for(WAIT, "the approval page's address", async || {
        Ok(proc
            .stderr
            .text()
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("http://bulwark-approve.localhost:"))
            .map(str::to_owned))
    })
    .await
}

/// Uses the page of a background `bulwark` in the browser (its passkey, with
/// the virtual authenticator) and waits for the command to succeed.
async fn use_page(
    browser: &browser::Browser,
    mut proc: bulwark_e2e::Proc,
    expect: &str,
) -> Result<String> {
    let url = page_url(&proc).await?;
    browser.goto(&url).await?;
    browser.click("#go").await?;
    browser.wait_text("#status", expect).await?;
    let status = proc
        .wait_timeout(WAIT)
        .await?
        .context("the command did not finish after the page was used")?;
    ensure!(
        status.success(),
        "the command failed ({status}):\n{}\n{}",
        proc.stdout.text(),
        proc.stderr.text()
    );
    Ok(proc.stdout.text())
}

/// The owner makes an approval passkey in the page their own `bulwark`
/// serves, and lists it in demo's policy with the public key the
/// authenticator gave; run-script needs two signers; a technician's job,
/// signed once on the command line, waits as pending. The console shows the
/// job but has no approve button; `bulwark job approve --passkey` shows
/// the job from its statement in its own page, the passkey signs, and the
/// local agent runs it. A console page cannot even ask the authenticator
/// for an approval credential.
#[tokio::test]
async fn job_approved_with_a_passkey_on_the_approvers_machine() -> Result<()> {
    let s = Setup::start().await?;
    let base = s.up.base_url();
    let browser = browser::Browser::start().await?;
    let result = approve_with_passkey(&s, &browser, &base).await;
    if result.is_err()
        && let Ok(source) = browser.client().source().await
    {
        eprintln!("[job approval] page source at the failure:\n{source}");
    }
    browser.close().await?;
    result
}

async fn approve_with_passkey(s: &Setup, browser: &browser::Browser, base: &str) -> Result<()> {
    let tech_config = listed_technician(s).await?;

    // The owner creates an approval passkey in the page of their bulwark.
    let adding = cli_background(s, &["keys", "add-passkey", "--name", "laptop"])?;
    let out = use_page(browser, adding, "Created").await?;
    ensure!(out.contains("Registered it with your account"), "{out}");
    ensure!(
        browser
            .credentials()
            .await?
            .iter()
            .any(|c| c["rpId"] == "bulwark-approve.localhost"),
        "the authenticator holds no approval credential"
    );
    // Drill attack 3: the server's copy of the passkey's public key swapped
    // for an attacker's. The policy lists the key the authenticator gave
    // this machine, not the server's.
    let local_key_id = out
        .lines()
        .find_map(|l| l.split("(key id ").nth(1))
        .and_then(|rest| rest.split(')').next())
        .context("add-passkey printed no key id")?
        .to_owned();
    let stored = s.sql("SELECT hex(public_key) FROM signing_keys WHERE name = 'laptop'")?;
    let attacker = TestPasskey::new()?.public_key()?;
    s.sql(&format!(
        "UPDATE signing_keys SET public_key = X'{}' WHERE name = 'laptop'",
        hex::encode(bulwark_protocol::codec::to_canonical(&attacker))
    ))?;
    s.add_operator("owner passkey", &["--passkey", "laptop"])
        .await?;
    let listed = s
        .cli_json(&["policy", "show", "--tenant", "demo", "--json"])
        .await?;
    ensure!(
        listed.to_string().contains(&local_key_id)
            && !listed.to_string().contains(&hex::encode(attacker.id().0)),
        "the policy lists another key than the authenticator's {local_key_id}: {listed}"
    );
    s.sql(&format!(
        "UPDATE signing_keys SET public_key = X'{stored}' WHERE name = 'laptop'"
    ))?;
    s.require_two_signers().await?;

    // The technician's job, signed once: pending.
    let (script, marker) = s.script("passkey-approved")?;
    let script = script.display().to_string();
    let out = s
        .cli_in(
            &tech_config,
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &s.local,
                "--script",
                &script,
                "--reason",
                "rotate the web server's logs before the audit (ticket 4711)",
                "--key",
                "tech",
                "--no-wait",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let id = decode_json::<JobView>(&out.stdout)
        .context("job run --json")?
        .id;
    let view = s.job_view(&id).await?;
    ensure!(view.state == "pending", "one signature of two: {view:?}");

    // The owner finds it in the console: what will run, and how to approve
    // it, but no button (a page the server serves cannot approve).
    browser.sign_in(base, &s.owner).await?;
    browser.goto(&format!("{base}/jobs/{id}")).await?;
    browser
        .wait_text("#script", &format!("touch '{}'", marker.display()))
        .await?;
    browser.wait_text("#quorum-have", "1").await?;
    browser
        .wait_text(
            "#approve-command",
            &format!("bulwark job approve {id} --passkey"),
        )
        .await?;
    ensure!(
        browser.find("#approve-passkey").await.is_err(),
        "the console still offers a passkey approval"
    );
    let pending_shot = browser.client().screenshot().await?;
    // A console page asking for an approval credential: the browser refuses.
    let answer = browser
        .client()
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             navigator.credentials.get({ publicKey: { rpId: 'bulwark-approve.localhost',\
               challenge: new Uint8Array(32), userVerification: 'required', timeout: 5000 } })\
             .then(() => done('an assertion'), (e) => done(e.name));",
            vec![],
        )
        .await?;
    ensure!(
        answer == json!("SecurityError"),
        "a console page asked for an approval credential and got: {answer}"
    );

    // The approval, on the owner's machine.
    let approving = cli_background(s, &["job", "approve", &id, "--passkey", "laptop", "--yes"])?;
    let url = page_url(&approving).await?;
    browser.goto(&url).await?;
    browser.wait_text("#statement", "ticket 4711").await?;
    browser
        .wait_text("#statement", "Class      run-script")
        .await?;
    browser
        .wait_text("#script", &format!("touch '{}'", marker.display()))
        .await?;
    let approval_shot = browser.client().screenshot().await?;
    browser.click("#go").await?;
    browser.wait_text("#status", "Approved").await?;
    let mut approving = approving;
    let status = approving
        .wait_timeout(WAIT)
        .await?
        .context("job approve did not finish")?;
    ensure!(
        status.success(),
        "job approve failed:\n{}",
        approving.stderr.text()
    );
    let target = s.wait_final(&id, &s.local).await?;
    ensure!(
        target.state == "succeeded" && marker.exists(),
        "the job approved with a passkey did not run: {target:?}"
    );
    let view = s.job_view(&id).await?;
    ensure!(
        view.signers
            .iter()
            .any(|s| s.name.as_deref() == Some("owner passkey")),
        "the passkey is not among the signers: {view:?}"
    );
    let screenshot = bulwark_e2e::workspace_root().join(JOB_SCREENSHOT);
    std::fs::create_dir_all(screenshot.parent().context("screenshot path")?)?;
    std::fs::write(&screenshot, &pending_shot)
        .with_context(|| format!("writing {}", screenshot.display()))?;
    std::fs::write(
        bulwark_e2e::workspace_root().join(APPROVAL_SCREENSHOT),
        &approval_shot,
    )?;
    Ok(())
}

/// A P-256 credential made here, as a passkey would hold it.
struct TestPasskey {
    pair: ring::signature::EcdsaKeyPair,
}

impl TestPasskey {
    fn new() -> Result<Self> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("keygen"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("pkcs8"))?;
        Ok(Self { pair })
    }

    /// The policy key: this credential as an approval passkey.
    fn public_key(&self) -> Result<bulwark_policy::PublicKey> {
        use ring::signature::KeyPair as _;
        let sec1: [u8; 65] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .context("P-256 point")?;
        Ok(bulwark_policy::PublicKey::WebAuthn(
            bulwark_policy::webauthn::WebAuthnCredential {
                rp_id: bulwark_policy::APPROVAL_RP_ID.to_owned(),
                key: bulwark_policy::webauthn::CoseKey::Es256 { sec1 },
            },
        ))
    }

    /// What a browser returns from `navigator.credentials.get` for `challenge`.
    fn assert(
        &self,
        challenge: &[u8],
        flags: u8,
    ) -> Result<bulwark_policy::webauthn::WebAuthnSignature> {
        use base64::Engine as _;
        use ring::digest::{SHA256, digest};
        let client_data = format!(
            r#"{{"type":"webauthn.get","challenge":"{}","origin":"http://bulwark-approve.localhost:41234","crossOrigin":false}}"#,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge)
        )
        .into_bytes();
        let mut auth_data = digest(&SHA256, bulwark_policy::APPROVAL_RP_ID.as_bytes())
            .as_ref()
            .to_vec();
        auth_data.push(flags);
        auth_data.extend_from_slice(&7u32.to_be_bytes());
        let mut message = auth_data.clone();
        message.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), &message)
            .map_err(|_| anyhow::anyhow!("sign"))?;
        Ok(bulwark_policy::webauthn::WebAuthnSignature {
            authenticator_data: auth_data,
            client_data_json: client_data,
            signature: signature.as_ref().to_vec(),
        })
    }
}

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;

/// Rewrites job `id`'s stored envelope with `assertion` added as a passkey
/// signature by `key`, and marks the job approved, as an attacker with the
/// database would.
fn add_forged_approval(
    s: &Setup,
    id: &str,
    key: &bulwark_policy::PublicKey,
    assertion: bulwark_policy::webauthn::WebAuthnSignature,
) -> Result<()> {
    use bulwark_policy::{Limits, Signed};
    let hex = s.sql(&format!(
        "SELECT hex(envelope) FROM jobs WHERE id = {}",
        sql_text(id)
    ))?;
    let mut signed = Signed::from_bytes(&decode_hex(&hex)?, &Limits::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    signed.add_webauthn(key.id(), assertion);
    let forged: String = signed
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    s.sql(&format!(
        "UPDATE jobs SET envelope = X'{forged}', state = 'approved' WHERE id = {}",
        sql_text(id)
    ))?;
    Ok(())
}

/// What an approval passkey signs for the job `view` shows: the approval
/// challenge of its envelope's statement.
fn challenge_of(view: &JobView) -> Result<Vec<u8>> {
    Ok(envelope_of(view)?.approval_challenge().to_vec())
}

/// Attack 8 of issue 5: passkey approvals forged in the database (for
/// another job's challenge, by a credential the policy does not list,
/// without user verification) run nothing; the refusal reaches the server
/// and the console; a job with a correct passkey approval runs.
#[tokio::test]
async fn forged_passkey_approval_is_refused() -> Result<()> {
    use base64::Engine as _;
    let s = Setup::start().await?;
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    let listed = TestPasskey::new()?;
    let listed_key = listed.public_key()?;
    let unlisted = TestPasskey::new()?;
    let unlisted_key = unlisted.public_key()?;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(bulwark_protocol::codec::to_canonical(&listed_key));
    s.add_operator("listed passkey", &["--passkey-public-key", &encoded])
        .await?;
    s.require_two_signers().await?;

    victim.stop().await?;
    let (other, _) = s.submit(&device, "other-job", &[]).await?;
    let other_challenge = challenge_of(&s.job_view(&other).await?)?;
    let mut forged = Vec::new();
    for (name, code) in [
        ("another-jobs-hash", "bad_signature"),
        ("unlisted-credential", "too_few_signers"),
        ("no-user-verification", "bad_signature"),
    ] {
        let (id, marker) = s.submit(&device, name, &[]).await?;
        let view = s.job_view(&id).await?;
        ensure!(view.state == "pending", "one signer of two: {view:?}");
        let challenge = challenge_of(&view)?;
        let (key, assertion) = match name {
            "another-jobs-hash" => (
                &listed_key,
                listed.assert(&other_challenge, FLAG_UP | FLAG_UV)?,
            ),
            "unlisted-credential" => (
                &unlisted_key,
                unlisted.assert(&challenge, FLAG_UP | FLAG_UV)?,
            ),
            _ => (&listed_key, listed.assert(&challenge, FLAG_UP)?),
        };
        add_forged_approval(&s, &id, key, assertion)?;
        forged.push((id, marker, code));
    }
    // Delivered on the next connection; the other job stays pending.
    victim.resume()?;
    for (id, marker, code) in &forged {
        s.expect_refused(id, &device, code, marker).await?;
        let target = target_of(&s.job_view(id).await?, &device)?;
        ensure!(
            target
                .refusal_reason
                .as_deref()
                .is_some_and(|r| !r.is_empty()),
            "the refusal reason did not reach the server: {target:?}"
        );
    }

    // The console's job page shows the refusal prominently.
    let (id, _, code) = &forged[0];
    let page = s.console_page(&format!("/jobs/{id}")).await?;
    ensure!(
        page.contains("id=\"refusals\"") && page.contains(code),
        "the job page does not show the refusal:\n{page}"
    );

    // A correct passkey approval (the listed credential, this job's
    // challenge, user verified) passes steps 1 to 12: the agent alone
    // decides. Written into the database behind the server's back, the job
    // is in no log, so it still does not run: the refusal comes from step
    // 13, after every signature check passed. (The console's real approval
    // path runs it: `job_approved_with_a_passkey_in_the_console`.)
    victim.stop().await?;
    let (good, marker) = s.submit(&device, "passkey-approved", &[]).await?;
    let challenge = challenge_of(&s.job_view(&good).await?)?;
    add_forged_approval(
        &s,
        &good,
        &listed_key,
        listed.assert(&challenge, FLAG_UP | FLAG_UV)?,
    )?;
    victim.resume()?;
    s.expect_refused(&good, &device, "log_proof_missing", &marker)
        .await?;
    Ok(())
}

#[path = "support/key_file.rs"]
mod key_file;
#[path = "support/statements.rs"]
mod statements;

/// The drill's "sign-in ceremony accepted as an approval" (issue 12, RFD
/// 0005), with a real browser and authenticator. The attacker owns the
/// server, so it serves the console's JavaScript and picks the challenge of
/// every console ceremony.
///
/// The owner signs in to the console and adds a console passkey there (RP
/// id: the console's host). A technician's job waits for a second signer.
/// On a console page, the server's script calls `navigator.credentials.get`
/// with rpId = the console's host, the owner's console passkey, and as
/// challenge the job's approval challenge (`Signed::approval_challenge`),
/// or the plain `Signed::digest` an older design had passkeys sign. (The
/// test runs that script through WebDriver.) The authenticator gives a
/// real, user-verified assertion, which verifies for the console's RP id.
/// The server adds it to the job's envelope as an approval and marks the
/// job approved, naming as its key:
///
/// 1. the same public key relabelled as an approval passkey (the CLI lists
///    that: it cannot tell whose key it is);
/// 2. another listed approval passkey.
///
/// The agent refuses each with `bad_signature` (a listed key whose
/// signature does not count: console RP id, console origin), the refusal
/// reaches the server, no script runs, and a correctly approved job still
/// runs. Had the agent counted an assertion, the quorum would be met and
/// the job, which is in no log, refused with `log_proof_missing` instead.
///
/// The console credential itself cannot be listed: `policy add-operator`
/// refuses it, and a policy that root holders sign around the CLI is
/// malformed (`Policy::verify_update`), so the server refuses to store it
/// and, written into the database, the agent refuses it and keeps its own.
#[tokio::test]
async fn console_passkey_ceremony_does_not_approve_a_job() -> Result<()> {
    let s = Setup::start().await?;
    let browser = browser::Browser::start().await?;
    let result = console_ceremony_as_approval(&s, &browser).await;
    if result.is_err()
        && let Ok(source) = browser.client().source().await
    {
        eprintln!("[console ceremony] page source at the failure:\n{source}");
    }
    browser.close().await?;
    result
}

async fn console_ceremony_as_approval(s: &Setup, browser: &browser::Browser) -> Result<()> {
    use base64::Engine as _;
    use bulwark_policy::webauthn::WebAuthnCredential;
    use bulwark_policy::{APPROVAL_RP_ID, PublicKey};
    let base = s.up.base_url();
    let console_host = reqwest::Url::parse(&base)?
        .host_str()
        .context("the console URL has no host")?
        .to_owned();
    let mut victim = s.victim().await?;
    let device = victim.device_id.clone();
    // A second signer, so that a correct job can still be approved at the end.
    let tech_config = listed_technician(s).await?;

    // The owner's console passkey, added on the account page.
    browser.sign_in(&base, &s.owner).await?;
    browser.goto(&format!("{base}/account")).await?;
    browser.fill("passkey_name", "laptop").await?;
    browser.click("#passkey-add").await?;
    browser.wait_text("#passkeys tbody", "laptop").await?;
    let held = browser.credentials().await?;
    ensure!(
        held.len() == 1 && held[0]["rpId"] == console_host.as_str(),
        "the authenticator should hold one console credential for {console_host}: {held:?}"
    );
    // Its public key as the server stored it (the assertions below verify
    // under it, so it is the authenticator's).
    let stored = s.sql("SELECT hex(credential) FROM passkeys WHERE name = 'laptop'")?;
    let console: WebAuthnCredential =
        bulwark_protocol::codec::from_canonical(&decode_hex(&stored)?)
            .map_err(|e| anyhow::anyhow!("the stored console credential: {e}"))?;
    ensure!(
        console.rp_id == console_host,
        "the console passkey is bound to {:?}, not the console's host {console_host}",
        console.rp_id
    );
    let console_key = PublicKey::WebAuthn(console.clone());
    let relabelled = PublicKey::WebAuthn(WebAuthnCredential {
        rp_id: APPROVAL_RP_ID.to_owned(),
        key: console.key.clone(),
    });
    let other_key = TestPasskey::new()?.public_key()?;
    let encoded = |key: &PublicKey| {
        base64::engine::general_purpose::STANDARD.encode(bulwark_protocol::codec::to_canonical(key))
    };

    // The CLI will not list a console credential in a policy...
    let refused = s
        .cli(
            &[
                "policy",
                "add-operator",
                "--tenant",
                "demo",
                "--passkey-public-key",
                &encoded(&console_key),
                "--name",
                "owner console passkey",
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success()
            && refused
                .stderr
                .contains("a console sign-in passkey never does"),
        "policy add-operator listed a console credential:\n{}",
        refused.all_output()
    );
    // ...but lists its key relabelled, and any approval passkey key.
    s.add_operator(
        "console key as approval passkey",
        &["--passkey-public-key", &encoded(&relabelled)],
    )
    .await?;
    s.add_operator(
        "listed passkey",
        &["--passkey-public-key", &encoded(&other_key)],
    )
    .await?;
    s.require_two_signers().await?;
    // Root holders who go around the CLI list the console credential: the
    // server will not store that policy (it is malformed: see the end).
    let (version, listing) = list_by_hand(s, &console_key, "owner console passkey").await?;

    // Four pending jobs, each "approved" with a console ceremony over its own
    // challenge (approval challenge or digest) under one of the two keys.
    victim.stop().await?;
    let mut forged = Vec::new();
    for (key_name, key) in [("relabelled", &relabelled), ("other-passkey", &other_key)] {
        for challenge_kind in ["approval-challenge", "digest"] {
            let name = format!("{key_name}-{challenge_kind}");
            let (id, marker) = s.submit(&device, &name, &[]).await?;
            let view = s.job_view(&id).await?;
            ensure!(view.state == "pending", "one signer of two: {view:?}");
            let envelope = envelope_of(&view)?;
            let challenge = match challenge_kind {
                "approval-challenge" => envelope.approval_challenge(),
                _ => envelope.digest(),
            };
            // The server's script, on the job's console page.
            browser.goto(&format!("{base}/jobs/{id}")).await?;
            let assertion = console_assertion(browser, &console_host, &challenge).await?;
            // A real sign-in assertion: it verifies for the console, user verified.
            assertion
                .verify(&console, &challenge, true)
                .map_err(|e| anyhow::anyhow!("the console assertion for {name}: {e}"))?;
            add_forged_approval(s, &id, key, assertion)?;
            forged.push((id, marker));
        }
    }
    ensure!(
        browser
            .credentials()
            .await?
            .first()
            .and_then(|c| c["signCount"].as_u64())
            .is_some_and(|n| n >= 4),
        "the authenticator did not sign the four ceremonies"
    );

    victim.resume()?;
    for (id, marker) in &forged {
        s.expect_refused(id, &device, "bad_signature", marker)
            .await?;
        let target = target_of(&s.job_view(id).await?, &device)?;
        ensure!(
            target
                .refusal_reason
                .as_deref()
                .is_some_and(|r| !r.is_empty()),
            "the refusal reason did not reach the server: {target:?}"
        );
    }
    let audit = s.api.audit("demo").await?;
    for (id, _) in &forged {
        ensure!(
            audit.iter().any(|e| {
                e.action == "job.refused_by_agent"
                    && e.target == *id
                    && e.detail.contains("(bad_signature)")
            }),
            "no job.refused_by_agent (bad_signature) for {id} in the audit log"
        );
    }

    // A correct job, signed by the owner and approved by the technician, runs.
    victim.stop().await?;
    let (id, marker) = s.submit(&device, "after-console-ceremony", &[]).await?;
    s.cli_in(
        &tech_config,
        &["job", "approve", &id, "--key", "tech", "--yes"],
        None,
    )
    .await?
    .ok()?;
    victim.resume()?;
    let target = s.wait_final(&id, &device).await?;
    ensure!(
        target.state == "succeeded" && marker.exists(),
        "the correct job did not run after the forgeries: {target:?}"
    );

    // The policy listing the console credential, written into the database
    // as an owned server would: the agent refuses it and stays on its own.
    victim.stop().await?;
    s.sql(&format!(
        "INSERT INTO trust_statements (tenant_id, kind, version, envelope, created_by, created_at) \
         VALUES ((SELECT id FROM tenants WHERE name = 'demo'), 'policy', {version}, X'{}', NULL, 0)",
        hex::encode(listing.to_bytes())
    ))?;
    victim.resume()?;
    let alert = s.expect_alert("malformed").await?;
    ensure!(
        alert.contains("only approval passkeys"),
        "the agent refused the policy for another reason: {alert}"
    );
    let held = s.sql(&format!(
        "SELECT policy_version FROM device_trust WHERE device_id = {}",
        sql_text(&device)
    ))?;
    ensure!(
        held == (version - 1).to_string(),
        "the victim holds policy v{held}, not v{}",
        version - 1
    );
    Ok(())
}

/// The envelope of the job `view` shows.
fn envelope_of(view: &JobView) -> Result<bulwark_policy::Signed> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(view.envelope.as_deref().context("no envelope")?)?;
    bulwark_policy::Signed::from_bytes(&bytes, &bulwark_policy::Limits::default())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// What a console page's script gets from `navigator.credentials.get` with
/// `rp_id` and `challenge`, sent back base64url as a page would post it.
async fn console_assertion(
    browser: &browser::Browser,
    rp_id: &str,
    challenge: &[u8],
) -> Result<bulwark_policy::webauthn::WebAuthnSignature> {
    use base64::Engine as _;
    let answer = browser
        .client()
        .execute_async(
            "const [challenge, rpId, done] = arguments;\
             const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))\
               .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');\
             navigator.credentials.get({ publicKey: { rpId, challenge: new Uint8Array(challenge),\
               userVerification: 'required', timeout: 10000 } })\
             .then((c) => done({ authenticatorData: b64u(c.response.authenticatorData),\
                                 clientDataJSON: b64u(c.response.clientDataJSON),\
                                 signature: b64u(c.response.signature) }),\
                   (e) => done({ error: e.name + ': ' + e.message }));",
            vec![json!(challenge), json!(rp_id)],
        )
        .await?;
    let field = |name: &str| -> Result<Vec<u8>> {
        let text = answer[name]
            .as_str()
            .with_context(|| format!("the console ceremony gave no {name}: {answer}"))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text)?)
    };
    Ok(bulwark_policy::webauthn::WebAuthnSignature {
        authenticator_data: field("authenticatorData")?,
        client_data_json: field("clientDataJSON")?,
        signature: field("signature")?,
    })
}

/// Demo's next policy with `key` listed for run-script, signed with the
/// root keys this machine holds (opened from their files, not through the
/// CLI, which would refuse), offered to the API with a fresh MFA check: the
/// server refuses to store it. Returns its version and envelope.
async fn list_by_hand(
    s: &Setup,
    key: &bulwark_policy::PublicKey,
    name: &str,
) -> Result<(u64, bulwark_policy::Signed)> {
    use base64::Engine as _;
    use bulwark_policy::{ActionClass, Holder, Limits, OperatorKey, Policy, Signed};
    let shown = s
        .cli_json(&["policy", "show", "--tenant", "demo", "--json"])
        .await?;
    let hex = s.sql(
        "SELECT hex(envelope) FROM trust_statements WHERE kind = 'policy' \
         AND tenant_id = (SELECT id FROM tenants WHERE name = 'demo') ORDER BY version DESC LIMIT 1",
    )?;
    let limits = Limits::default();
    let mut policy: Policy = Signed::from_bytes(&decode_hex(&hex)?, &limits)
        .and_then(|signed| signed.statement(&limits))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    policy.version += 1;
    policy.operators.push(OperatorKey {
        key: key.clone(),
        name: name.to_owned(),
        holder: Holder::Msp,
        classes: vec![ActionClass::RunScript],
    });
    let mut signed = Signed::new(&policy);
    for root_key in shown["root"]["keys"].as_array().context("no root keys")? {
        let local = root_key["local_key"]
            .as_str()
            .with_context(|| format!("a root key this machine does not hold: {root_key}"))?;
        let file = s.config.join("keys").join(format!("{local}.key"));
        signed.sign(&key_file::steal_key(&file, PASSPHRASE)?);
    }
    let path = "/api/v1/tenants/demo/trust/policy";
    let body = json!({
        "envelope": base64::engine::general_purpose::STANDARD.encode(signed.to_bytes()),
    });
    let mut reply = s.api.call(reqwest::Method::POST, path, Some(&body)).await?;
    if reply.error_code().ok().as_deref() == Some("step_up_required") {
        let otp = s.owner.next_otp().await?;
        s.api
            .post_json("/api/v1/auth/step-up", &json!({ "otp": otp }))
            .await?;
        reply = s.api.call(reqwest::Method::POST, path, Some(&body)).await?;
    }
    ensure!(
        reply.status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
            && reply.body.to_string().contains("only approval passkeys"),
        "the server should refuse policy v{} listing a console credential: {} {}",
        policy.version,
        reply.status,
        reply.body
    );
    Ok((policy.version, signed))
}
