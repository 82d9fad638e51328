//! Root rotation end to end (issue 5): `bulwark tenant rotate-root` replaces
//! the demo tenant's root keys, and the agents already running take the new
//! root and the re-signed policy over their normal connection: no reinstall,
//! no re-enrolment. Then the attacks: statements signed by the dropped root
//! key, or a rotation without the old root's consent, written into the
//! server's SQLite database behind its back, are refused by the agents.
//!
//! Needs the `sqlite3` command-line tool for the tampering.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_e2e::{ExtraAgent, OperatorSetup, sql_text, wait_for};
use bulwark_policy::{Holder, Limits, Policy, PublicKey, RootKey, Signed, TrustRoot};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

#[path = "support/key_file.rs"]
mod key_file;
use key_file::steal_key;
#[path = "support/statements.rs"]
mod statements;
use statements::{delete_statement, insert_statement, latest_statement};

const PASSPHRASE: &str = "e2e root rotation: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(30);

/// One `bulwark up`, its owner logged in with the CLI, and a scratch directory
/// (shared with `signed_jobs.rs`).
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

    /// What `device`'s agent last reported holding (`TrustStatus`, stored in
    /// `device_trust`): (root version, policy version).
    fn agent_holds(&self, device: &str) -> Result<String> {
        self.sql(&format!(
            "SELECT root_version || ' ' || policy_version FROM device_trust WHERE device_id = {}",
            sql_text(device)
        ))
    }

    async fn wait_agent_holds(&self, device: &str, root: u64, policy: u64) -> Result<()> {
        let want = format!("{root} {policy}");
        wait_for(
            WAIT,
            &format!("agent {device} to hold root v{root} and policy v{policy}"),
            async || Ok((self.agent_holds(device)? == want).then_some(())),
        )
        .await
    }

    /// Waits for `device`'s `alert.trust_refused` about `statement` ("policy
    /// v3") with `code`.
    async fn expect_alert(&self, device: &str, statement: &str, code: &str) -> Result<String> {
        let needle = format!("{device} refused {statement} ({code})");
        wait_for(
            WAIT,
            &format!("an alert.trust_refused: {needle}"),
            async || {
                Ok(self
                    .api
                    .audit("demo")
                    .await?
                    .into_iter()
                    .filter(|e| e.action == "alert.trust_refused")
                    .map(|e| e.detail)
                    .find(|d| d.contains(&needle)))
            },
        )
        .await
    }

    /// POST as the owner, with a fresh MFA check if the server asks for one.
    async fn post_privileged(&self, path: &str, body: &Value) -> Result<bulwark_e2e::Reply> {
        let reply = self
            .api
            .call(reqwest::Method::POST, path, Some(body))
            .await?;
        if reply.status != reqwest::StatusCode::FORBIDDEN
            || reply.error_code().ok().as_deref() != Some("step_up_required")
        {
            return Ok(reply);
        }
        let otp = self.owner.next_otp().await?;
        self.api
            .post_json("/api/v1/auth/step-up", &json!({ "otp": otp }))
            .await?;
        self.api.call(reqwest::Method::POST, path, Some(body)).await
    }
}

#[tokio::test]
async fn root_rotation_reaches_agents_without_reinstall() -> Result<()> {
    let s = Setup::start().await?;
    // A second agent, which the attacks below restart to make it reconnect.
    let mut victim = ExtraAgent::start(&s.api, &s.up.info.gateway_url, "demo").await?;
    let device = victim.device_id.clone();
    s.good_job_runs(&s.local, "before-rotation").await?;
    s.wait_agent_holds(&s.local, 1, 1).await?;
    s.wait_agent_holds(&device, 1, 1).await?;

    // 1. Rotate demo's root: two new keys, both must sign, the old key dropped.
    let before = s
        .cli_json(&["policy", "show", "--tenant", "demo", "--json"])
        .await?;
    ensure!(before["root"]["version"] == 1, "demo's root: {before}");
    let old_name = before["root"]["keys"][0]["name"]
        .as_str()
        .context("no root key name")?
        .to_owned();
    let rotated = s
        .cli_json(&[
            "tenant",
            "rotate-root",
            "--tenant",
            "demo",
            "--new-root-keys",
            "2",
            "--threshold",
            "2",
            "--drop",
            &old_name,
            "--json",
        ])
        .await?;
    let keys = rotated["root"]["keys"]
        .as_array()
        .context("no keys")?
        .clone();
    ensure!(
        rotated["root"]["version"] == 2
            && rotated["root"]["threshold"] == 2
            && keys.len() == 2
            && keys.iter().all(|k| k["name"] != old_name.as_str()
                && k["holder"] == "msp"
                && k["local_key"].is_string())
            && rotated["dropped_keys"][0]["name"] == old_name.as_str()
            && rotated["policy_version"] == 2
            && rotated["root_fingerprint"] == before["root_fingerprint"],
        "rotate-root: {rotated}"
    );
    // The server's view, replayed from the first root.
    let trust = s.api.trust("demo").await?;
    ensure!(
        trust.root_version == Some(2)
            && trust.root_threshold == Some(2)
            && trust.policy_version == Some(2)
            && trust.roots.len() == 2
            && trust.problems.is_empty(),
        "GET trust after the rotation: {trust:?}"
    );
    // A second rotation with nothing new to say is refused before anything is made.
    let nothing = s
        .cli(&["tenant", "rotate-root", "--tenant", "demo"], None)
        .await?;
    ensure!(
        !nothing.success() && nothing.all_output().contains("nothing would change"),
        "an empty rotation: {}",
        nothing.all_output()
    );

    // 2. The running agents take it: same processes, same devices, no re-enrolment.
    s.wait_agent_holds(&s.local, 2, 2).await?;
    s.wait_agent_holds(&device, 2, 2).await?;
    let devices = s.api.devices("demo").await?;
    let mut ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    let mut expected = vec![s.local.clone(), device.clone()];
    expected.sort();
    ensure!(ids == expected, "demo's devices changed: {devices:?}");
    // And new jobs run under the policy the new root signed.
    s.good_job_runs(&s.local, "after-rotation").await?;
    s.good_job_runs(&device, "after-rotation-victim").await?;

    // 3. The dropped key, stolen: a policy v3 signed by it alone, written
    // into the database, is refused.
    let old_key = steal_key(
        &s.config.join("keys").join(format!("{old_name}.key")),
        PASSPHRASE,
    )?;
    let limits = Limits::default();
    let mut policy: Policy = latest_statement(&s, "policy")?
        .statement(&limits)
        .map_err(|e| anyhow!("{e}"))?;
    ensure!(
        policy.version == 2,
        "the latest policy is v{}",
        policy.version
    );
    policy.version = 3;
    let mut forged = Signed::new(&policy);
    forged.sign(&old_key);
    victim.stop().await?;
    insert_statement(&s, "policy", 3, &forged)?;
    victim.resume()?;
    s.expect_alert(&device, "policy v3", "root_threshold_not_met")
        .await?;
    ensure!(
        s.agent_holds(&device)? == "2 2",
        "the agent took the dropped key's policy"
    );
    delete_statement(&s, "policy", 3)?;

    // 4. A rotation signed by new keys only, without the current root's
    // threshold: the server refuses it, and so does the agent when it is
    // written into the database.
    let current: TrustRoot = latest_statement(&s, "root")?
        .statement(&limits)
        .map_err(|e| anyhow!("{e}"))?;
    let (k1, k2) = (
        SigningKey::from_bytes(&[0x71; 32]),
        SigningKey::from_bytes(&[0x72; 32]),
    );
    let root_key = |key: &SigningKey, name: &str| RootKey {
        key: PublicKey::Ed25519(key.verifying_key().to_bytes()),
        holder: Holder::Msp,
        name: name.to_owned(),
    };
    let usurper = TrustRoot {
        tenant: current.tenant.clone(),
        version: 3,
        threshold: 1,
        keys: vec![root_key(&k1, "usurper-1"), root_key(&k2, "usurper-2")],
    };
    let mut forged = Signed::new(&usurper);
    forged.sign(&k1);
    forged.sign(&k2);
    // The dropped key's consent is worth nothing either.
    forged.sign(&old_key);
    let reply = s
        .post_privileged(
            "/api/v1/tenants/demo/trust/roots",
            &json!({ "envelope": B64.encode(forged.to_bytes()) }),
        )
        .await?;
    ensure!(
        reply.status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
            && reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("root_threshold_not_met")),
        "the server accepted or misjudged a rotation without the current threshold: {} {}",
        reply.status,
        reply.body
    );
    victim.stop().await?;
    insert_statement(&s, "root", 3, &forged)?;
    victim.resume()?;
    s.expect_alert(&device, "root v3", "root_threshold_not_met")
        .await?;
    ensure!(
        s.agent_holds(&device)? == "2 2",
        "the agent took the usurping root"
    );
    delete_statement(&s, "root", 3)?;

    // The tenant works as before under root v2.
    s.good_job_runs(&device, "after-attacks").await?;
    s.good_job_runs(&s.local, "after-attacks-local").await?;
    // And its log's meaning replays: the rotation and its companions, in
    // the order the log records them, and every job released under them.
    s.cli(&["audit", "verify", "--tenant", "demo"], None)
        .await?
        .ok()?;
    Ok(())
}
