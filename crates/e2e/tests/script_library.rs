//! The script library (issue 15, RFD 0013) with a real server, agent and
//! three people on three machines: the MSP's owner (author, root key 1 of
//! 2), a technician (reviewer) and the customer's person (root key 2 of 2).
//!
//! A version is added, reviewed by the second operator, allow-listed by a
//! policy proposal both root holders sign, and run from the library under
//! the allow-list's lower quorum (1 signer, where any other script needs
//! 2). Then the server plays the attacker: a version's content swapped in
//! its database (the CLI refuses: hash mismatch), a forged review row (shown
//! as not verifiable; `job run --library` refuses the unreviewed version),
//! the author reviewing their own version with another key (the server
//! refuses), and a parameter value that fails its type (nothing is signed
//! or submitted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::jobs::JobView;
use bulwark_api::operators::InvitationCreated;
use bulwark_api::proposals::ProposalView;
use bulwark_api::setup::SetupResponse;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{
    Api, ExtraAgent, Finished, Owner, UpOptions, UpProcess, decode_json, operator_cli,
    operator_login, sqlite, wait_for, wait_job_final,
};
use serde_json::json;

#[path = "support/browser.rs"]
mod browser;
use browser::Browser;

const PASSPHRASE: &str = "e2e script library: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    up: UpProcess,
    api: Api,
    msp: PathBuf,
    tech: PathBuf,
    customer: PathBuf,
    work: tempfile::TempDir,
}

impl Setup {
    async fn cli(&self, config: &Path, args: &[&str]) -> Result<Finished> {
        operator_cli(config, PASSPHRASE, args, None).await
    }

    async fn msp(&self, args: &[&str]) -> Result<Finished> {
        self.cli(&self.msp, args).await?.ok()
    }

    async fn tech(&self, args: &[&str]) -> Result<Finished> {
        self.cli(&self.tech, args).await?.ok()
    }

    fn sql(&self, sql: &str) -> Result<String> {
        sqlite(&self.up, sql)
    }

    async fn policy_version(&self) -> Result<Option<u64>> {
        Ok(self.api.trust("acme").await?.policy_version)
    }

    /// The customer co-signs the one open proposal of acme; it is published.
    async fn customer_cosigns(&self, shows: &str) -> Result<()> {
        let list: Vec<ProposalView> = self
            .api
            .get_as("/api/v1/tenants/acme/trust/proposals")
            .await?;
        ensure!(list.len() == 1, "expected one open proposal: {list:?}");
        let id = list[0].id.clone();
        let shown = self
            .cli(&self.customer, &["trust", "show", &id])
            .await?
            .ok()?
            .stdout;
        ensure!(
            shown.contains(shows),
            "`trust show` lacks {shows:?}:\n{shown}"
        );
        let out = self
            .cli(
                &self.customer,
                &["trust", "sign", &id, "--key", "customer", "--yes"],
            )
            .await?
            .ok()?
            .stdout;
        ensure!(out.contains("is published"), "not published:\n{out}");
        Ok(())
    }

    fn file(&self, name: &str, text: &str) -> Result<String> {
        let path = self.work.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }

    fn job_count(&self) -> Result<String> {
        self.sql("SELECT COUNT(*) FROM jobs")
    }
}

async fn invite(api: &Api, up: &UpProcess, config: &Path, name: &str, role: &str) -> Result<()> {
    let password = format!("{name} password, long enough");
    let invite: InvitationCreated = api
        .post_as(
            "/api/v1/invitations",
            &json!({ "username": name, "role": role, "tenants": ["acme"] }),
        )
        .await?;
    let redeemed: SetupResponse = api
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({ "token": invite.token, "password": password }),
        )
        .await?;
    let who = Owner::new(name, &password, &redeemed.totp_secret);
    api.post_json(
        "/api/v1/invitations/confirm",
        &json!({ "enrolment_id": redeemed.enrolment_id, "otp": who.next_otp().await? }),
    )
    .await?;
    operator_login(up, config, PASSPHRASE, &who).await
}

#[tokio::test]
async fn a_reviewed_allow_listed_library_script_runs_and_a_lying_server_gets_nothing() -> Result<()>
{
    let started = std::time::Instant::now();
    let work = tempfile::tempdir()?;
    let [msp, tech, customer] =
        ["msp-config", "tech-config", "customer-config"].map(|d| work.path().join(d));
    for dir in [&msp, &tech, &customer] {
        std::fs::create_dir_all(dir)?;
    }
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
    invite(&api, &up, &customer, "ciso", "tenant_auditor").await?;
    invite(&api, &up, &tech, "tech", "technician").await?;
    let s = Setup {
        up,
        api,
        msp,
        tech,
        customer,
        work,
    };

    // Trust: root 2 of 2 (the MSP's key and the customer's), policy v1.
    let role = format!("root:{}", tenant.id);
    s.cli(
        &s.customer,
        &["keys", "new", "--name", "customer", "--role", &role],
    )
    .await?
    .ok()?;
    let customer_key = s
        .cli(&s.customer, &["keys", "export", "--name", "customer"])
        .await?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    s.msp(&[
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
    .await?;
    s.customer_cosigns("first root of the tenant").await?;
    s.msp(&["tenant", "init", "--tenant", "acme"]).await?;
    s.customer_cosigns("first policy of the tenant").await?;

    // The technician's key joins the policy; any script not on the
    // allow-list now needs two signers, an allow-listed one still one.
    s.tech(&["keys", "new", "--name", "operator"]).await?;
    let tech_key = s
        .tech(&["keys", "export", "--name", "operator"])
        .await?
        .stdout
        .trim()
        .to_owned();
    s.msp(&[
        "policy",
        "add-operator",
        "--tenant",
        "acme",
        "--public-key",
        &tech_key,
        "--name",
        "tech",
    ])
    .await?;
    s.customer_cosigns("tech").await?;
    let toml = s
        .msp(&["policy", "show", "--tenant", "acme", "--toml"])
        .await?
        .stdout;
    let stricter = toml.replace("run-script = { signers = 1,", "run-script = { signers = 2,");
    ensure!(stricter != toml, "no run-script quorum in:\n{toml}");
    let file = s.file("stricter.toml", &stricter)?;
    s.msp(&["policy", "sign", "--tenant", "acme", "--file", &file])
        .await?;
    s.customer_cosigns("run-script").await?;
    let agent = ExtraAgent::start(&s.api, &s.up.info.gateway_url, "acme").await?;
    let device = agent.device_id.clone();

    // 1. The owner adds a script; the technician reviews it.
    let marker = s.work.path().join("library.marker");
    let content = format!(
        "#!/bin/sh\ntouch '{}'\necho 'hello from the library'\n",
        marker.display()
    );
    let script = s.file("touch.sh", &content)?;
    s.msp(&[
        "script",
        "add",
        "touch",
        "--file",
        &script,
        "--interpreter",
        "sh",
        "--description",
        "Touches a <marker> file",
    ])
    .await?;
    let shown = s
        .msp(&["script", "show", "touch@1", "--tenant", "acme"])
        .await?
        .stdout;
    ensure!(shown.contains("not reviewed"), "{shown}");
    // Unreviewed: `job run --library` refuses, and nothing is submitted.
    let jobs_before = s.job_count()?;
    let refused = s
        .cli(
            &s.msp,
            &[
                "job",
                "run",
                "--tenant",
                "acme",
                "--targets",
                &device,
                "--library",
                "touch@1",
            ],
        )
        .await?;
    ensure!(
        !refused.success()
            && refused
                .all_output()
                .contains("no review of this version verifies"),
        "{}",
        refused.all_output()
    );
    ensure!(s.job_count()? == jobs_before, "a job was submitted");
    let reviewed = s
        .tech(&["script", "review", "touch@1", "--yes"])
        .await?
        .stdout;
    ensure!(reviewed.contains("hello from the library"), "{reviewed}");
    let shown = s
        .msp(&["script", "show", "touch@1", "--tenant", "acme"])
        .await?
        .stdout;
    ensure!(
        shown.contains("Reviewed by tech (signature verified)")
            && shown.contains("(signature verified under tenant acme's policy)"),
        "{shown}"
    );

    // 2. Reviewed, not allow-listed: a run needs two signers (pending).
    let out = s
        .msp(&[
            "job",
            "run",
            "--tenant",
            "acme",
            "--targets",
            &device,
            "--library",
            "touch@1",
            "--reason",
            "e2e",
            "--json",
            "--no-wait",
        ])
        .await?;
    let view: JobView = decode_json(&out.stdout)?;
    ensure!(
        view.state == "pending" && view.class == "run-script",
        "{view:?}"
    );

    // 3. Allow-listed through a proposal both root holders sign.
    let before = s.policy_version().await?;
    let out = s
        .msp(&["script", "allow", "touch@1", "--tenant", "acme"])
        .await?
        .stdout;
    ensure!(out.contains("Proposed as"), "{out}");
    ensure!(s.policy_version().await? == before, "published alone");
    s.customer_cosigns("+ allow-listed script sha256").await?;
    let shown = s
        .msp(&["script", "show", "touch@1", "--tenant", "acme"])
        .await?
        .stdout;
    ensure!(shown.contains("on tenant acme's allow-list"), "{shown}");

    // 4. Run from the library under the allow-list's quorum: one signer.
    // The agent takes the new policy on its connection's next Trust.
    wait_for(
        WAIT,
        "the agent to hold the allow-listing policy",
        async || {
            let held = s.sql(&format!(
                "SELECT policy_version FROM device_trust WHERE device_id = '{device}'"
            ))?;
            Ok((held.parse::<u64>().ok() == s.policy_version().await?).then_some(()))
        },
    )
    .await?;
    let out = s
        .msp(&[
            "job",
            "run",
            "--tenant",
            "acme",
            "--targets",
            &device,
            "--library",
            "touch@1",
            "--reason",
            "e2e",
            "--json",
            "--no-wait",
        ])
        .await?;
    let view: JobView = decode_json(&out.stdout)?;
    ensure!(
        view.state == "approved" && view.class == "run-allow-listed-script",
        "{view:?}"
    );
    let target = wait_job_final(&s.api, &view.id, &device).await?;
    ensure!(target.state == "succeeded", "{target:?}");
    ensure!(marker.exists(), "the script did not run");

    // 4b. The console: the library, the version's content escaped, and the
    // Run panel on the device page preparing the command (and refusing a
    // parameter the version does not have, preparing nothing).
    let browser = Browser::plain(1000).await?;
    let result = in_the_console(&browser, &s, &owner, &device).await;
    if result.is_err() {
        let shot = std::env::temp_dir().join(format!(
            "bulwark-scripts-failure-{}.png",
            std::process::id()
        ));
        if browser.screenshot(&shot).await.is_ok() {
            eprintln!("[scripts] screenshot of the failure: {}", shot.display());
        }
    }
    browser.close().await?;
    result?;

    // 5. The server swaps version 1's content (and its hash column): the CLI
    // refuses, since the author's and the reviewer's statements name the old hash.
    let evil = "#!/bin/sh\necho owned > /tmp/owned\n";
    let evil_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(evil.as_bytes()))
    };
    s.sql(&format!(
        "UPDATE script_versions SET content = '{evil}', sha256 = '{evil_hash}' WHERE version = 1"
    ))?;
    let jobs_before = s.job_count()?;
    for args in [
        vec!["script", "show", "touch@1", "--tenant", "acme"],
        vec![
            "job",
            "run",
            "--tenant",
            "acme",
            "--targets",
            &device,
            "--library",
            "touch@1",
        ],
    ] {
        let refused = s.cli(&s.msp, &args).await?;
        ensure!(
            !refused.success() && refused.all_output().contains("hash mismatch"),
            "{args:?}: {}",
            refused.all_output()
        );
    }
    // Content swapped, the hash column left as it was: refused as well.
    let original_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(content.as_bytes()))
    };
    s.sql(&format!(
        "UPDATE script_versions SET content = 'echo swapped', sha256 = '{original_hash}' \
         WHERE version = 1"
    ))?;
    let refused = s.cli(&s.msp, &["script", "show", "touch@1"]).await?;
    ensure!(
        !refused.success() && refused.all_output().contains("hash mismatch"),
        "{}",
        refused.all_output()
    );
    ensure!(s.job_count()? == jobs_before, "a job was submitted");

    // 6. A version 2 with a forged review row: the server copies the
    // technician's v1 review (a valid signature, for another version).
    let v2 = s.file("touch2.sh", "#!/bin/sh\necho two\n")?;
    s.msp(&["script", "new-version", "touch", "--file", &v2])
        .await?;
    s.sql(
        "INSERT INTO script_reviews (script_id, version, reviewer_id, envelope, created_at) \
         SELECT script_id, 2, reviewer_id, envelope, created_at FROM script_reviews WHERE version = 1",
    )?;
    let shown = s
        .msp(&["script", "show", "touch@2", "--tenant", "acme"])
        .await?
        .stdout;
    ensure!(
        shown.contains("review not verifiable") && shown.contains("not reviewed"),
        "{shown}"
    );
    let refused = s
        .cli(
            &s.msp,
            &[
                "job",
                "run",
                "--tenant",
                "acme",
                "--targets",
                &device,
                "--library",
                "touch@2",
            ],
        )
        .await?;
    ensure!(
        !refused.success()
            && refused
                .all_output()
                .contains("no review of this version verifies"),
        "{}",
        refused.all_output()
    );

    // 7. The author reviews their own version with another key: the CLI's
    // key check passes (another key), the server refuses (same operator).
    s.msp(&["keys", "new", "--name", "second"]).await?;
    let own = s
        .cli(
            &s.msp,
            &["script", "review", "touch@2", "--key", "second", "--yes"],
        )
        .await?;
    ensure!(
        !own.success() && own.all_output().contains("cannot review"),
        "{}",
        own.all_output()
    );

    // 8. Typed parameters: a value failing its type changes nothing.
    let params = s.file("greet.sh", "echo \"hello $name, $count times\"\n")?;
    s.msp(&[
        "script",
        "add",
        "greet",
        "--file",
        &params,
        "--interpreter",
        "sh",
        "--param",
        "name:string",
        "--param",
        "count:int",
    ])
    .await?;
    s.tech(&["script", "review", "greet@1", "--yes"]).await?;
    let jobs_before = s.job_count()?;
    let refused = s
        .cli(
            &s.msp,
            &[
                "job",
                "run",
                "--tenant",
                "acme",
                "--targets",
                &device,
                "--library",
                "greet@1",
                "--param",
                "name=x",
                "--param",
                "count=many",
            ],
        )
        .await?;
    ensure!(
        !refused.success() && refused.all_output().contains("not a plain decimal integer"),
        "{}",
        refused.all_output()
    );
    ensure!(s.job_count()? == jobs_before, "a job was submitted");
    // A valid run: the signed script carries the quoted values.
    let out = s
        .msp(&[
            "job",
            "run",
            "--tenant",
            "acme",
            "--targets",
            &device,
            "--library",
            "greet@1",
            "--param",
            "name=O'Brien; rm -rf /",
            "--param",
            "count=3",
            "--json",
            "--no-wait",
        ])
        .await?;
    let view: JobView = decode_json(&out.stdout)?;
    let script = view.script.clone().context("the job's script")?;
    ensure!(
        script.contains("name='O'\\''Brien; rm -rf /'\ncount='3'\n"),
        "{script}"
    );
    ensure!(view.class == "run-script", "{view:?}");
    eprintln!("script_library e2e took {:?}", started.elapsed());
    drop(agent);
    Ok(())
}

async fn in_the_console(browser: &Browser, s: &Setup, owner: &Owner, device: &str) -> Result<()> {
    let base = s.up.base_url();
    browser.sign_in(&base, owner).await?;
    browser.click("#scripts-link").await?;
    browser.wait_path("/scripts").await?;
    // The description's `<marker>` is text, not a tag.
    browser
        .wait_text(
            "#scripts tr[data-script=\"touch\"]",
            "Touches a <marker> file",
        )
        .await?;
    let shot = std::env::temp_dir().join("bulwark-scripts.png");
    browser.screenshot(&shot).await?;
    eprintln!("[scripts] screenshot: {}", shot.display());
    browser.click("#scripts a[href=\"/scripts/touch\"]").await?;
    browser.wait_path("/scripts/touch").await?;
    browser
        .wait_text("#version-content", "hello from the library")
        .await?;
    browser
        .wait_text("#review-status", "as the server says")
        .await?;
    let shot = std::env::temp_dir().join("bulwark-script.png");
    browser.screenshot(&shot).await?;
    eprintln!("[scripts] screenshot: {}", shot.display());

    let hostname = s.api.device(device).await?.hostname;
    browser.goto(&format!("{base}/devices/{device}")).await?;
    browser.find("#run-panel").await?;
    browser.fill("reason", "weekly cleanup").await?;
    browser.click("#run-prepare").await?;
    browser.wait_path("/tenants/acme/run").await?;
    let command = browser.text("#run-command").await?;
    ensure!(
        command
            == format!(
                "bulwark job run --tenant acme --targets {hostname} --library touch@1 --reason 'weekly cleanup'"
            ),
        "{command}"
    );
    let shot = std::env::temp_dir().join("bulwark-run.png");
    browser.screenshot(&shot).await?;
    eprintln!("[scripts] screenshot: {}", shot.display());
    // A parameter the version does not have: nothing prepared.
    let jobs_before = s.job_count()?;
    browser.fill("params", "path=/etc").await?;
    browser.click("#run-prepare").await?;
    browser
        .wait_text("#prepare-error-text", "has no parameter")
        .await?;
    ensure!(
        browser
            .client()
            .find(fantoccini::Locator::Css("#run-command"))
            .await
            .is_err(),
        "a command was prepared"
    );
    ensure!(s.job_count()? == jobs_before, "a job was submitted");
    Ok(())
}
