//! Trust statements signed by several people on different machines (RFD
//! 0002, "Proposals"): tenant `acme`'s root is 2 of 2, one key on the MSP's
//! machine and one on the customer's. Neither signs anything alone but the
//! customer's freeze; everything else is a proposal the other co-signs with
//! `bulwark trust sign` from their own configuration directory, and the
//! agent holds nothing new until the threshold is reached.
//!
//! The first root must be signed by its own threshold, so `tenant init`
//! proposes root v1 too; once it is published, `tenant init` run again
//! proposes the first policy (the simpler correct path: no threshold-1
//! root ever exists). Needs the `sqlite3` tool (what the agent reports
//! holding is read from `device_trust`).
//!
//! Once the policy names the customer's witness, the kill switch goes to
//! it as well, from whichever machine completes it: the customer's freeze
//! alone, and the MSP's unfreeze proposal when the customer's `trust sign`
//! reaches the threshold. An unfreeze the witness never got would leave
//! every job uncosigned, so the job after it runs only if `trust sign`
//! gave it (RFD 0006).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::jobs::{JobTargetView, JobView};
use bulwark_api::log::{LogHeadView, LogKeyView};
use bulwark_api::operators::InvitationCreated;
use bulwark_api::proposals::ProposalView;
use bulwark_api::setup::SetupResponse;
use bulwark_api::tenants::TenantView;
use bulwark_api::trust::TrustView;
use bulwark_e2e::{
    Api, ExtraAgent, Finished, Owner, UpOptions, UpProcess, WitnessProcess, decode_json,
    marker_script, operator_cli, operator_login, replace_policy_sections, sqlite, wait_for,
    wait_job_final, witnesses_section,
};
use serde_json::json;

const PASSPHRASE: &str = "e2e trust proposals: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    up: UpProcess,
    api: Api,
    /// The MSP owner's CLI configuration (and key store).
    msp: PathBuf,
    /// The customer's person (tenant auditor of acme), on another machine.
    customer: PathBuf,
    work: tempfile::TempDir,
}

impl Setup {
    async fn cli_in(&self, config: &Path, args: &[&str], stdin: Option<&str>) -> Result<Finished> {
        operator_cli(config, PASSPHRASE, args, stdin).await
    }

    async fn msp(&self, args: &[&str]) -> Result<Finished> {
        self.cli_in(&self.msp, args, None).await?.ok()
    }

    async fn customer(&self, args: &[&str]) -> Result<Finished> {
        self.cli_in(&self.customer, args, None).await?.ok()
    }

    fn sql(&self, sql: &str) -> Result<String> {
        sqlite(&self.up, sql)
    }

    /// What the agent last reported holding: "root policy frozen".
    fn agent_holds(&self, device: &str) -> Result<String> {
        self.sql(&format!(
            "SELECT root_version || ' ' || policy_version || ' ' || frozen FROM device_trust \
             WHERE device_id = '{}'",
            device.replace('\'', "''")
        ))
    }

    async fn wait_agent_holds(&self, device: &str, want: &str) -> Result<()> {
        wait_for(
            WAIT,
            &format!("agent {device} to hold (root policy frozen) {want}"),
            async || Ok((self.agent_holds(device)? == want).then_some(())),
        )
        .await
    }

    /// The one open proposal of acme: (id, kind).
    async fn open_proposal(&self) -> Result<(String, String)> {
        let list: Vec<ProposalView> = self
            .api
            .get_as("/api/v1/tenants/acme/trust/proposals")
            .await?;
        ensure!(list.len() == 1, "expected one open proposal: {list:?}");
        let proposal = list.into_iter().next().context("no proposal")?;
        Ok((proposal.id, proposal.kind))
    }

    async fn trust(&self) -> Result<TrustView> {
        self.api.trust("acme").await
    }

    /// The customer checks and co-signs the open proposal; it is published.
    async fn customer_cosigns(&self, kind: &str, shows: &str) -> Result<()> {
        let (id, found) = self.open_proposal().await?;
        ensure!(
            found == kind,
            "the open proposal is a {found}, not a {kind}"
        );
        let shown = self.customer(&["trust", "show", &id]).await?.stdout;
        ensure!(
            shown.contains(shows),
            "`trust show` lacks {shows:?}:\n{shown}"
        );
        let signed = self
            .customer(&["trust", "sign", &id, "--key", "customer", "--yes"])
            .await?
            .stdout;
        ensure!(signed.contains("is published"), "not published:\n{signed}");
        let view: ProposalView = self
            .api
            .get_as(&format!("/api/v1/trust-proposals/{id}"))
            .await?;
        ensure!(view.state == "published", "{view:?}");
        ensure!(
            self.api
                .get_as::<Vec<ProposalView>>("/api/v1/tenants/acme/trust/proposals")
                .await?
                .is_empty(),
            "a proposal is still open"
        );
        Ok(())
    }

    fn script(&self, name: &str) -> Result<(String, PathBuf)> {
        let (script, marker) = marker_script(self.work.path(), name)?;
        Ok((script.display().to_string(), marker))
    }

    /// Runs a job on `device` (the MSP's operator key, quorum 1) and returns
    /// its target once final.
    async fn job(&self, device: &str, name: &str) -> Result<(JobTargetView, PathBuf)> {
        let (script, marker) = self.script(name)?;
        let out = self
            .msp(&[
                "job",
                "run",
                "--tenant",
                "acme",
                "--targets",
                device,
                "--script",
                &script,
                "--reason",
                "e2e",
                "--json",
                "--no-wait",
            ])
            .await?;
        let view: JobView = decode_json(&out.stdout).context("job run --json")?;
        let target = wait_job_final(&self.api, &view.id, device).await?;
        Ok((target, marker))
    }
}

#[tokio::test]
async fn statements_co_signed_from_two_machines() -> Result<()> {
    let work = tempfile::tempdir()?;
    let msp = work.path().join("msp-config");
    let customer = work.path().join("customer-config");
    std::fs::create_dir_all(&msp)?;
    std::fs::create_dir_all(&customer)?;
    let up = UpProcess::start(
        UpOptions::default()
            .env("BULWARK_CONFIG_DIR", msp.display().to_string())
            .env("BULWARK_KEY_PASSPHRASE", PASSPHRASE),
    )
    .await?;
    let (owner, api) = Api::bootstrap(&up).await?;
    operator_login(&up, &msp, PASSPHRASE, &owner).await?;
    let tenant: TenantView = api
        .post_as("/api/v1/tenants", &json!({ "name": "acme" }))
        .await?;
    let tenant_id = tenant.id;

    // The customer's person: tenant auditor of acme, signed in on their own machine.
    let password = "customer password, long enough";
    let invite: InvitationCreated = api
        .post_as(
            "/api/v1/invitations",
            &json!({ "username": "ciso", "role": "tenant_auditor", "tenants": ["acme"] }),
        )
        .await?;
    let redeemed: SetupResponse = api
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({ "token": invite.token, "password": password }),
        )
        .await?;
    let ciso = Owner::new("ciso", password, &redeemed.totp_secret);
    api.post_json(
        "/api/v1/invitations/confirm",
        &json!({ "enrolment_id": redeemed.enrolment_id, "otp": ciso.next_otp().await? }),
    )
    .await?;
    operator_login(&up, &customer, PASSPHRASE, &ciso).await?;
    let s = Setup {
        up,
        api,
        msp,
        customer,
        work,
    };
    let role = format!("root:{tenant_id}");
    s.customer(&["keys", "new", "--name", "customer", "--role", &role])
        .await?;
    let customer_key = s
        .customer(&["keys", "export", "--name", "customer"])
        .await?
        .stdout
        .trim()
        .to_owned();

    // 1. Root v1, 2 of 2: the MSP's init proposes it; the customer co-signs.
    let out = s
        .msp(&[
            "tenant",
            "init",
            "--tenant",
            "acme",
            "--root-keys",
            "1",
            "--threshold",
            "2",
            "--customer-key",
            &customer_key,
        ])
        .await?
        .stdout;
    ensure!(out.contains("bulwark trust sign"), "{out}");
    ensure!(
        s.trust().await?.root_version.is_none(),
        "root published alone"
    );
    s.customer_cosigns("root", "first root of the tenant: 2 of 2 keys")
        .await?;
    ensure!(s.trust().await?.root_threshold == Some(2));

    // 2. The first policy: `tenant init` again proposes it; co-signed.
    s.msp(&["tenant", "init", "--tenant", "acme"]).await?;
    ensure!(
        s.trust().await?.policy_version.is_none(),
        "policy published alone"
    );
    s.customer_cosigns("policy", "first policy of the tenant")
        .await?;
    ensure!(s.trust().await?.policy_version == Some(1));

    // 3. An agent of acme holds root v1 and policy v1.
    let agent = ExtraAgent::start(&s.api, &s.up.info.gateway_url, "acme").await?;
    let device = agent.device_id.clone();
    s.wait_agent_holds(&device, "1 1 0").await?;

    // 4. A policy change signed by the MSP alone is a proposal: nothing
    // changes for the agent until the customer co-signs.
    let (allowed, _) = s.script("allowed")?;
    let out = s
        .msp(&[
            "policy",
            "allow-script",
            "--tenant",
            "acme",
            "--script",
            &allowed,
        ])
        .await?
        .stdout;
    ensure!(out.contains("Proposed as"), "{out}");
    let hash = String::from_utf8(
        std::process::Command::new("sha256sum")
            .arg(&allowed)
            .output()?
            .stdout,
    )?
    .split_whitespace()
    .next()
    .context("sha256sum")?
    .to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(s.trust().await?.policy_version == Some(1));
    ensure!(s.agent_holds(&device)? == "1 1 0", "the agent moved alone");
    s.customer_cosigns("policy", &format!("+ allow-listed script sha256 {hash}"))
        .await?;
    s.wait_agent_holds(&device, "1 2 0").await?;

    // 4b. The customer's witness (freeze grace 1 s) joins the policy,
    // co-signed: every job from now on needs its fresh cosignature.
    let fingerprint = s
        .trust()
        .await?
        .root_fingerprint
        .context("acme has a root")?;
    let log_key: LogKeyView = s.api.get_as("/api/v1/log/key").await?;
    let head: LogHeadView = s.api.get_as("/api/v1/tenants/acme/log").await?;
    let mut witness = WitnessProcess::init("witness.test/acme")?.with_freeze_grace(1);
    witness.add_log(&head.origin, &log_key.vkey, Some(&fingerprint))?;
    witness.start().await?;
    let toml = s
        .msp(&["policy", "show", "--tenant", "acme", "--toml"])
        .await?
        .stdout;
    let file = s.work.path().join("witnessed.toml");
    std::fs::write(
        &file,
        replace_policy_sections(
            &toml,
            &["witnesses"],
            &witnesses_section(1, 60, &[&witness]),
        ),
    )?;
    let out = s
        .msp(&[
            "policy",
            "sign",
            "--tenant",
            "acme",
            "--file",
            &file.display().to_string(),
        ])
        .await?
        .stdout;
    ensure!(out.contains("Proposed as"), "{out}");
    s.customer_cosigns("policy", &format!("+ witness {}", witness.vkey()))
        .await?;
    s.wait_agent_holds(&device, "1 3 0").await?;
    let (target, _) = s.job(&device, "witnessed").await?;
    ensure!(
        target.state == "succeeded",
        "a job under the witnessed policy: {target:?}"
    );

    // 5. The customer freezes alone (a customer root key may): jobs are
    // refused, and the witness holds the freeze.
    let out = s
        .customer(&[
            "tenant",
            "freeze",
            "--tenant",
            "acme",
            "--key",
            "customer",
            "--reason",
            "customer says stop",
        ])
        .await?
        .stdout;
    ensure!(
        out.contains("witness.test/acme  accepted:")
            && out.contains("1 of the policy's 1 witnesses hold the freeze"),
        "the freeze's report: {out}"
    );
    s.wait_agent_holds(&device, "1 3 1").await?;
    let (target, marker) = s.job(&device, "while-frozen").await?;
    ensure!(
        // Frozen, or (once the witness's 1 s grace has passed before the
        // job's head was cosigned) refused for want of its cosignature:
        // the freeze stops it either way.
        target.state == "refused"
            && matches!(
                target.refusal_code.as_deref(),
                Some("frozen" | "witness_cosignatures_missing")
            ),
        "{target:?}"
    );
    ensure!(!marker.exists(), "the refused job ran");

    // 6. The MSP alone cannot unfreeze: a proposal; the agent stays frozen.
    let out = s
        .msp(&[
            "tenant",
            "unfreeze",
            "--tenant",
            "acme",
            "--reason",
            "all clear",
        ])
        .await?
        .stdout;
    ensure!(out.contains("Proposed as"), "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(s.trust().await?.frozen);
    ensure!(
        s.agent_holds(&device)? == "1 3 1",
        "the agent unfroze alone"
    );
    // The customer's signature completes it: `trust sign` gives the
    // unfreeze to the witness, which has refused to cosign since its grace.
    let (id, _) = s.open_proposal().await?;
    let out = s
        .customer(&["trust", "sign", &id, "--key", "customer", "--yes"])
        .await?
        .stdout;
    ensure!(
        out.contains("is published")
            && out.contains("witness.test/acme  accepted:")
            && out.contains("1 of the policy's 1 witnesses hold the unfreeze"),
        "the co-signed unfreeze's report: {out}"
    );
    s.wait_agent_holds(&device, "1 3 0").await?;
    // Agents run jobs again once the witness cosigns the log again (as the
    // unfreeze's report says): the server re-asks it within its backoff.
    wait_for(WAIT, "the witness to cosign acme's log again", async || {
        let head: LogHeadView = s.api.get_as("/api/v1/tenants/acme/log").await?;
        let cosigned = head
            .checkpoint
            .is_some_and(|c| c.note.contains("\u{2014} witness.test/acme "));
        Ok(cosigned.then_some(()))
    })
    .await?;
    let (target, marker) = s.job(&device, "after-unfreeze").await?;
    ensure!(
        target.state == "succeeded" && target.exit_code == Some(0),
        "{target:?}"
    );
    ensure!(marker.exists(), "the job did not run");

    // 7. The MSP rotates the root to add a second MSP key, keeping 2 of
    // now 3: it holds one key of root v1, so the rotation (with the policy
    // re-signed as version 4) is a proposal; the agent stays at root v1.
    let out = s
        .msp(&[
            "tenant",
            "rotate-root",
            "--tenant",
            "acme",
            "--new-root-keys",
            "1",
        ])
        .await?
        .stdout;
    ensure!(
        out.contains("Proposed as") && out.contains("bulwark trust sign"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(s.trust().await?.root_version == Some(1), "rotated alone");
    ensure!(s.trust().await?.policy_version == Some(3));
    ensure!(s.agent_holds(&device)? == "1 3 0", "the agent moved alone");
    // The customer checks (the new key set, the policy unchanged) and
    // co-signs the root and its policy companion in one `trust sign`.
    s.customer_cosigns("root", "new root version 2: 2 of 3 keys")
        .await?;
    ensure!(s.trust().await?.root_version == Some(2));
    ensure!(s.trust().await?.policy_version == Some(4));
    s.wait_agent_holds(&device, "2 4 0").await?;
    let view = s.api.device(&device).await?;
    ensure!(
        view.trust
            .as_ref()
            .is_some_and(|t| t.root_version == 2 && t.policy_version == 4),
        "{view:?}"
    );
    let (target, marker) = s.job(&device, "after-rotation").await?;
    ensure!(
        target.state == "succeeded" && target.exit_code == Some(0),
        "{target:?}"
    );
    ensure!(marker.exists(), "the job did not run after the rotation");

    // The audit log names every step.
    let events = s.api.audit("acme").await?;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "trust.proposed",
        "trust.proposal_signed",
        "trust.proposal_published",
        "trust.root_published",
        "trust.policy_published",
        "trust.frozen",
        "trust.unfrozen",
    ] {
        ensure!(actions.contains(&action), "no {action} in {actions:?}");
    }
    // Co-signed statements, a freeze and its unfreeze, a rotation and a
    // job: the log's meaning replays with the agents' rules, and its
    // newest head carries the witness's cosignature (the server asks for
    // it within seconds of the last entry: until then verify exits 4).
    wait_for(WAIT, "a witnessed audit verify", async || {
        let out = s
            .cli_in(&s.msp, &["audit", "verify", "--tenant", "acme"], None)
            .await?;
        match out.status.code() {
            Some(0) => Ok(Some(())),
            Some(4) => Ok(None),
            _ => anyhow::bail!("audit verify: {out:?}"),
        }
    })
    .await?;
    witness.stop().await?;
    drop(agent);
    Ok(())
}
