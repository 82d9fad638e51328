//! Signed agent updates end to end (issue 17, RFD 0017), with a release
//! channel made by python-tuf (`support/release_channel.py`) whose
//! releases are the real `bulwark-agent` binary with a few bytes appended
//! (it still runs; its SHA-256 tells which binary runs) and a release that
//! exits at start.
//!
//! The local agent of `bulwark up` is the installed agent: `bulwark up`
//! restarts it when it exits, as systemd does with the unit, and it is its
//! launcher (`bulwark_agent::self_update`). Its release root is pinned in
//! its state directory as `bulwark-agent install --release-root` does.
//!
//! One server, one agent, in order: the import; a job without the
//! tenant's update-agent quorum (released by an owned server) and one
//! whose hash is not the release keys' are refused; a binary tampered on
//! the mirror is refused; the signed release installs and the agent comes
//! back running it; an older release is refused (no downgrade); a release
//! that crashes rolls back by itself; a release signed by too few release
//! keys and old metadata served again (rollback) are refused. Nothing is
//! installed by a refused job: the reported hash does not move.
//!
//! Needs python-tuf (`cargo xtask test` installs it) and `sqlite3`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::jobs::{JobTargetView, JobView};
use bulwark_api::signing_keys::SigningKeyView;
use bulwark_e2e::{OperatorSetup, decode_json, wait_for};
use bulwark_policy::{ActionClass, JobAction, JobStatement, JobTarget, Limits, Signed};
use bulwark_store::{JobState, NewJob, Store};
use ed25519_dalek::SigningKey;
use serde_json::json;
use sha2::{Digest, Sha256};

#[path = "../../../xtask/src/schemathesis.rs"]
#[allow(dead_code)]
mod python_tools;

const PASSPHRASE: &str = "e2e agent update: a passphrase nobody guesses";
const PLATFORM: &str = "x86_64-unknown-linux-gnu";

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

struct Channel {
    dir: PathBuf,
    sha256: serde_json::Map<String, serde_json::Value>,
}

impl Channel {
    fn make(work: &Path) -> Result<Self> {
        let python = python_tools::venv_python();
        ensure!(
            python.is_file(),
            "{} is missing: run `cargo xtask test` (it installs python-tuf)",
            python.display()
        );
        let dir = work.join("channel");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/release_channel.py");
        let out = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .arg(bulwark_e2e::agent_bin()?)
            .arg(PLATFORM)
            .output()?;
        ensure!(
            out.status.success(),
            "release_channel.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sha256 = serde_json::from_slice(&out.stdout).context("release hashes")?;
        Ok(Self { dir, sha256 })
    }

    fn sha(&self, version: &str) -> String {
        self.sha256[version].as_str().unwrap_or_default().to_owned()
    }

    fn root(&self) -> String {
        self.dir.join("root.json").display().to_string()
    }

    fn repo(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// What the server lists for the device: (version, binary SHA-256).
async fn running(s: &OperatorSetup) -> Result<(String, Option<String>)> {
    let d = s.api.device(&s.local).await?;
    Ok((d.agent_version, d.agent_sha256))
}

async fn wait_running(s: &OperatorSetup, sha: &str, within: Duration) -> Result<()> {
    wait_for(
        within,
        &format!("the agent running sha256 {sha}"),
        async || {
            let d = s.api.device(&s.local).await?;
            Ok((d.online && d.agent_sha256.as_deref() == Some(sha)).then_some(()))
        },
    )
    .await
}

/// `bulwark agent update --version VERSION --no-wait` (`job run
/// --update-agent` with `via_job_run`): the job id.
async fn update_job(s: &OperatorSetup, ch: &Channel, version: &str) -> Result<String> {
    submit_update(s, ch, version, false).await
}

async fn submit_update(
    s: &OperatorSetup,
    ch: &Channel,
    version: &str,
    via_job_run: bool,
) -> Result<String> {
    let root = ch.root();
    let mut args = if via_job_run {
        vec!["job", "run", "--update-agent", version]
    } else {
        vec!["agent", "update", "--version", version]
    };
    args.extend([
        "--tenant",
        "demo",
        "--targets",
        s.local.as_str(),
        "--release-root",
        root.as_str(),
        "--platform",
        PLATFORM,
        "--reason",
        "e2e agent update",
        "--no-wait",
        "--json",
    ]);
    let out = s.cli(&args, None).await?.ok()?;
    let view: JobView = decode_json(&out.stdout).context("the update job's --json")?;
    ensure!(view.class == "update-agent", "{view:?}");
    Ok(view.id)
}

async fn wait_target(s: &OperatorSetup, id: &str, within: Duration) -> Result<JobTargetView> {
    wait_for(within, &format!("job {id} to finish"), async || {
        let view = s.api.job(id).await?;
        let t = view
            .targets
            .into_iter()
            .find(|t| t.device_id == s.local)
            .context("no target")?;
        Ok(matches!(
            t.state.as_str(),
            "succeeded" | "failed" | "refused" | "timed_out"
        )
        .then_some(t))
    })
    .await
}

async fn expect_refused(
    s: &OperatorSetup,
    id: &str,
    code: &str,
    sha_before: &str,
) -> Result<JobTargetView> {
    let t = wait_target(s, id, Duration::from_secs(60)).await?;
    ensure!(
        t.state == "refused" && t.refusal_code.as_deref() == Some(code),
        "expected {code}, got {t:?}"
    );
    let (_, sha) = running(s).await?;
    ensure!(
        sha.as_deref() == Some(sha_before),
        "a refused update changed the binary: {sha:?}"
    );
    ensure!(
        !s.up.data_dir().join("agent/update.pending").exists(),
        "a refused update left update.pending"
    );
    Ok(t)
}

/// A key the root holders listed in demo's policy for every class, and
/// registered to the owner's account: one operator's key, stolen.
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

/// An update job signed by `key` alone, stored by the owned server as
/// approved (with its `job.released` log entry): delivered with a valid
/// log proof whatever the server's own checks would say.
async fn release_as_owned_server(
    s: &OperatorSetup,
    key: &SigningKey,
    version: &str,
    sha256: [u8; 32],
) -> Result<String> {
    let device = s.api.device(&s.local).await?;
    let now = now_secs();
    let statement = JobStatement {
        tenant: s.sql("SELECT id FROM tenants WHERE name = 'demo'")?,
        job_id: random(),
        targets: vec![JobTarget {
            device_id: s.local.clone(),
            hostname: device.hostname,
            device_key: None,
        }],
        class: ActionClass::UpdateAgent,
        action: JobAction::UpdateAgent {
            version: version.to_owned(),
            binary_sha256: sha256,
        },
        not_before: now - 60,
        expires_at: now + 3600,
        nonce: random(),
        reason: "routine update".into(),
        timeout_secs: 300,
        tenant_name: "demo".into(),
    };
    let mut envelope = Signed::new(&statement);
    envelope.sign(key);
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
                script: Vec::new(),
                script_sha256: Sha256::digest(b"").into(),
                envelope: envelope.to_bytes(),
                signed_sha256: envelope.digest(),
                not_before: ms(job.not_before),
                expires_at: ms(job.expires_at),
                state: JobState::Approved,
                signed_with: Vec::new(),
            },
            std::slice::from_ref(&s.local),
            ms(now_secs()),
            &[],
        )
        .await?;
    store.close().await;
    // A job the server's own code stored wakes no session: an ordinary
    // job for the device does, and the session sends every approved one.
    s.cli(
        &[
            "job",
            "run",
            "--tenant",
            "demo",
            "--targets",
            &s.local,
            "--inventory-refresh",
            "--reason",
            "e2e nudge",
            "--no-wait",
        ],
        None,
    )
    .await?
    .ok()?;
    Ok(id)
}

/// The policy TOML with `signers = n` for update-agent.
fn update_quorum(toml: &str, n: u32) -> Result<String> {
    let mut out = String::new();
    let mut in_class = false;
    let mut changed = false;
    for line in toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_class = trimmed.contains("update-agent");
        }
        if in_class && trimmed.starts_with("signers") {
            out.push_str(&format!("signers = {n}\n"));
            changed = true;
            continue;
        }
        if (trimmed.starts_with("update-agent") || trimmed.starts_with("\"update-agent\""))
            && trimmed.contains("signers = ")
        {
            let start = line.find("signers = ").unwrap_or_default() + "signers = ".len();
            let end = line[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(line.len(), |e| start + e);
            out.push_str(&format!("{}{n}{}\n", &line[..start], &line[end..]));
            changed = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !changed {
        bail!("no update-agent quorum in the policy TOML:\n{toml}");
    }
    Ok(out)
}

fn hash_bytes(hex_text: &str) -> Result<[u8; 32]> {
    hex::decode(hex_text)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("not 32 bytes"))
}

#[tokio::test]
async fn a_signed_release_installs_and_every_forgery_is_refused() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let ch = Channel::make(s.work.path())?;
    let launcher_sha = hex::encode(Sha256::digest(std::fs::read(bulwark_e2e::agent_bin()?)?));

    // The release root, pinned as `bulwark-agent install --release-root` does.
    let state = s.up.data_dir().join("agent");
    std::fs::copy(ch.dir.join("root.json"), state.join("release-root.json"))?;

    // The agent reports its version and the hash of the binary it runs.
    let (version, sha) = running(&s).await?;
    ensure!(version == "0.1.0", "{version}");
    ensure!(sha.as_deref() == Some(launcher_sha.as_str()), "{sha:?}");

    // The import, verified first from the release root by the CLI.
    let root = ch.root();
    let good = ch.repo("good");
    let out = s
        .cli(&["release", "import", &good, "--release-root", &root], None)
        .await?
        .ok()?;
    ensure!(out.stdout.contains("timestamp.json"), "{}", out.stdout);
    let shown = s
        .cli(
            &[
                "release",
                "show",
                "0.2.0",
                "--release-root",
                &root,
                "--platform",
                PLATFORM,
            ],
            None,
        )
        .await?
        .ok()?
        .stdout;
    ensure!(shown.contains(&ch.sha("0.2.0")), "{shown}");
    // A repository that does not verify is named before anything is uploaded.
    let few = ch.repo("too_few_keys");
    let refused = s
        .cli(&["release", "import", &few, "--release-root", &root], None)
        .await?;
    ensure!(
        !refused.success() && refused.all_output().contains("does not verify"),
        "{}",
        refused.all_output()
    );

    // 1. A job without the tenant's update-agent quorum (2 signers): the
    // owned server releases it anyway; the agent refuses it.
    let mallory = stolen_operator_key(&s).await?;
    let id = release_as_owned_server(&s, &mallory, "0.2.0", hash_bytes(&ch.sha("0.2.0"))?).await?;
    expect_refused(&s, &id, "too_few_signers", &launcher_sha).await?;

    // The root holders lower the quorum to one signer.
    let toml = s
        .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
        .await?
        .ok()?
        .stdout;
    let file = s.work.path().join("policy.toml");
    std::fs::write(&file, update_quorum(&toml, 1)?)?;
    let file = file.display().to_string();
    s.cli(
        &["policy", "sign", "--tenant", "demo", "--file", &file],
        None,
    )
    .await?
    .ok()?;

    // 2. A signed job whose hash is not the one the release keys signed.
    let id = release_as_owned_server(&s, &mallory, "0.2.0", hash_bytes(&ch.sha("0.1.5"))?).await?;
    let t = expect_refused(&s, &id, "release_mismatch", &launcher_sha).await?;
    ensure!(
        t.refusal_reason
            .as_deref()
            .is_some_and(|r| r.contains("the release keys signed")),
        "{t:?}"
    );

    // 3. The binary tampered on the mirror (the server's database).
    s.sql(
        "UPDATE release_files SET content = zeroblob(length(content)) \
         WHERE kind = 'target' AND path LIKE 'bulwark-agent/0.2.0/%'",
    )?;
    let id = submit_update(&s, &ch, "0.2.0", true).await?;
    let t = expect_refused(&s, &id, "release_not_verified", &launcher_sha).await?;
    ensure!(
        t.refusal_reason
            .as_deref()
            .is_some_and(|r| r.contains("not the signed release")),
        "{t:?}"
    );
    // The operator imports the release again.
    s.cli(&["release", "import", &good], None).await?.ok()?;

    // 4. The signed release: installed, the agent back on the new binary.
    let started = Instant::now();
    let id = update_job(&s, &ch, "0.2.0").await?;
    let t = wait_target(&s, &id, Duration::from_secs(120)).await?;
    ensure!(t.state == "succeeded" && t.exit_code == Some(0), "{t:?}");
    ensure!(
        t.stdout
            .as_deref()
            .is_some_and(|o| o.contains("installed: 0.2.0")),
        "{t:?}"
    );
    wait_running(&s, &ch.sha("0.2.0"), Duration::from_secs(60)).await?;
    eprintln!(
        "FIGURE: job submitted to the agent back on the new version: {} ms",
        started.elapsed().as_millis()
    );
    let (version, _) = running(&s).await?;
    ensure!(version == "0.2.0", "{version}");
    let shown = s
        .cli(&["device", "show", &s.local], None)
        .await?
        .ok()?
        .stdout;
    ensure!(shown.contains(&ch.sha("0.2.0")), "{shown}");
    let new_sha = ch.sha("0.2.0");

    // 5. An older release: never a downgrade.
    let id = update_job(&s, &ch, "0.1.5").await?;
    expect_refused(&s, &id, "downgrade", &new_sha).await?;

    // 6. A release that exits at start: the launcher rolls it back by itself.
    let id = update_job(&s, &ch, "0.3.0").await?;
    let t = wait_target(&s, &id, Duration::from_secs(120)).await?;
    ensure!(t.state == "failed" && t.exit_code == Some(1), "{t:?}");
    ensure!(
        t.stdout
            .as_deref()
            .is_some_and(|o| o.contains("rolled back: 0.3.0") && o.contains("3 times")),
        "{t:?}"
    );
    wait_running(&s, &new_sha, Duration::from_secs(60)).await?;

    // 7. A release signed by too few release keys, imported without the
    // check: the agent refuses it.
    s.cli(&["release", "import", &few], None).await?.ok()?;
    let id = release_as_owned_server(&s, &mallory, "0.4.0", hash_bytes(&ch.sha("0.4.0"))?).await?;
    let t = expect_refused(&s, &id, "release_not_verified", &new_sha).await?;
    ensure!(
        t.refusal_reason
            .as_deref()
            .is_some_and(|r| r.contains("valid signature")),
        "{t:?}"
    );

    // 8. The older metadata served again (a rollback of the release
    // channel): the agent holds version 2 of the timestamp and refuses.
    s.cli(&["release", "import", &good], None).await?.ok()?;
    let id = release_as_owned_server(&s, &mallory, "0.3.0", hash_bytes(&ch.sha("0.3.0"))?).await?;
    let t = expect_refused(&s, &id, "release_not_verified", &new_sha).await?;
    ensure!(
        t.refusal_reason
            .as_deref()
            .is_some_and(|r| r.contains("version")),
        "{t:?}"
    );
    Ok(())
}

/// `bulwark-agent install --release-root` pins the root once; another
/// root is refused (later roots come only through the rotation chain).
#[tokio::test]
async fn install_pins_the_release_root_once() -> Result<()> {
    let work = tempfile::tempdir()?;
    let ch = Channel::make(work.path())?;
    let other = Channel::make(&work.path().join("other"))?;
    let root_dir = work.path().join("image");
    let agent = bulwark_e2e::agent_bin()?;
    let install = |root: String| {
        Command::new(&agent)
            .args([
                "--state-dir",
                "/var/lib/bulwark-agent",
                "install",
                "--no-start",
                "--root-dir",
            ])
            .arg(&root_dir)
            .args(["--release-root", &root])
            .output()
    };
    let out = install(ch.root())?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = root_dir.join("var/lib/bulwark-agent/release-root.json");
    ensure!(std::fs::read(&pinned)? == std::fs::read(ch.dir.join("root.json"))?);
    let out = install(other.root())?;
    ensure!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("a different release root is pinned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(std::fs::read(&pinned)? == std::fs::read(ch.dir.join("root.json"))?);
    Ok(())
}
