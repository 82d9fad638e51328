//! `bulwark job …`: sign a job on this machine, submit it, approve others'
//! jobs by signing them, and follow per-device results.
//!
//! The private key stays in the local key store (`bulwark keys`); the
//! server receives the signed envelope and relays it. What a person signs
//! is rendered here from the statement's own bytes (RFD 0005): tenant,
//! action and class, each target with the host name it was chosen by,
//! validity, reason and signers, and the script whose hash is signed. The
//! server's JSON is used for lists and results only.
//!
//! This file is long because every kind of job is rendered from its signed
//! bytes, signed and followed here (script, command, library script,
//! inventory refresh, patches, cancel and live output); the library-script
//! preparation belongs in `commands::scripts` and moves there next.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::job_status::TargetStatus;
use bulwark_api::jobs::{
    ApprovalRequest, CancelRequest, JobOutputView, JobRequest, JobTargetView, JobView,
    OutputStreamView, QuorumView, RejectRequest, WebAuthnApproval,
};
use bulwark_api::signing_keys::{SigningKeyRequest, SigningKeyView};
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::{ActionClass, Interpreter, JobAction, JobStatement, Limits, Policy, Signed};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::client::{Session, path_segment};
use crate::commands::keys::KeyStore;
use crate::commands::targets::{Targets, resolve_targets};
use crate::output::{Cell, or_dash, print_json, render_table, terminal_text, unix_now, use_colour};

// Parsed once per process: the size of `Run`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Sign a job for some devices of a tenant (a script, a command, an
    /// inventory refresh or package updates), submit it and follow the
    /// results. The action class, and so the quorum, follows from what the
    /// job does.
    #[command(group(clap::ArgGroup::new("action").required(true).args(["script", "command", "library", "inventory_refresh", "install_patches", "update_agent"])))]
    Run {
        #[arg(long)]
        tenant: String,
        /// Device ids or hostnames, comma separated.
        #[arg(long, value_delimiter = ',', required_unless_present_any = ["all", "tags", "group"])]
        targets: Vec<String>,
        /// Every device of the tenant (each named in the signed job by host
        /// name and key, like any target; the tenant's mass-action delay
        /// applies).
        #[arg(long, conflicts_with_all = ["targets", "tags", "group"])]
        all: bool,
        /// The tenant's devices carrying this tag (repeat, or comma
        /// separated: all must match). The server's answer is listed, host
        /// name by host name, and signed as those devices.
        #[arg(long = "tag", value_name = "TAG", conflicts_with = "targets")]
        tags: Vec<String>,
        /// The tenant's devices in this group (with --tag: both).
        #[arg(long, conflicts_with = "targets")]
        group: Option<String>,
        /// A script file to run.
        #[arg(long, value_name = "FILE")]
        script: Option<std::path::PathBuf>,
        /// A one-line command to run with sh (a script of one line).
        #[arg(long, value_name = "TEXT")]
        command: Option<String>,
        /// A version of the script library (NAME@V, or NAME for the newest):
        /// fetched, its content checked against the SHA-256 its author and a
        /// reviewer signed, the review verified under the tenant's policy.
        #[arg(long, value_name = "NAME[@V]", conflicts_with = "interpreter")]
        library: Option<String>,
        /// A parameter of the library script, name=value (repeat): checked
        /// against the version's types and signed into the script.
        #[arg(long = "param", value_name = "NAME=VALUE", requires = "library")]
        params: Vec<String>,
        /// Collect and send a full inventory now (runs no script).
        #[arg(long)]
        inventory_refresh: bool,
        /// Install package updates with apt (runs no script): the packages
        /// named with --packages, else every pending security update.
        #[arg(long)]
        install_patches: bool,
        /// With --install-patches: the packages to upgrade, comma separated
        /// (Debian package names).
        #[arg(long, value_delimiter = ',', requires = "install_patches")]
        packages: Vec<String>,
        /// Update the agent to this release version (RFD 0017; runs no
        /// script): the SHA-256 signed into the job is the one the release
        /// keys signed, verified here from --release-root over the mirror.
        #[arg(long, value_name = "VERSION", requires = "release_root")]
        update_agent: Option<String>,
        /// With --update-agent: the release root (TUF root.json) to verify from.
        #[arg(long, value_name = "FILE", requires = "update_agent")]
        release_root: Option<std::path::PathBuf>,
        /// With --update-agent: the agents' platform (target triple).
        #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
        platform: String,
        /// sh, bash or python3; by default the script's `#!` line, else sh.
        #[arg(long)]
        interpreter: Option<String>,
        /// Why: shown to approvers, agents' logs and auditors.
        #[arg(long, default_value = "")]
        reason: String,
        /// The local signing key to sign with.
        #[arg(long, default_value = "operator")]
        key: String,
        /// Stop the script after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u32,
        /// How long the job stays valid (approvals must arrive within it).
        #[arg(long, value_name = "MINUTES", default_value_t = 60)]
        valid_for: u32,
        /// Return as soon as the job is submitted.
        #[arg(long)]
        no_wait: bool,
        /// Sign without showing the job and asking first (on a terminal,
        /// `bulwark` shows what it signs, rendered from the statement's own
        /// bytes, and asks: a command pasted from a page is read once more).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// The jobs of a tenant, newest first.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Everything about one job: the exact script, who asked and why, signatures, results.
    Show {
        id: String,
        /// Keep showing until every target has finished.
        #[arg(long)]
        wait: bool,
        /// Print the output as it arrives (each line prefixed with its
        /// device when there are several), until the job ends.
        #[arg(long, conflicts_with_all = ["wait", "json"])]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: devices not sent it yet never get it, devices running
    /// it kill its script (agents of protocol version 3 and later; a patch
    /// run finishes, a half-done apt run would break the system).
    Cancel {
        id: String,
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Approve a pending job by signing it with a local key.
    Approve {
        id: String,
        /// The local Ed25519 key to sign with.
        #[arg(long, default_value = "operator")]
        key: String,
        /// Approve with this machine's approval passkey instead (`bulwark keys
        /// add-passkey`), in a page this `bulwark` serves on this machine.
        #[arg(long, value_name = "NAME")]
        passkey: Option<String>,
        /// Do not ask for confirmation after showing the job.
        #[arg(long)]
        yes: bool,
        /// A current TOTP code, if the server asks for a fresh MFA check.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending job: it will never run.
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

pub async fn run(cmd: JobCommand) -> Result<()> {
    match cmd {
        JobCommand::Run {
            tenant,
            targets,
            all,
            tags,
            group,
            script,
            command,
            library,
            params,
            inventory_refresh,
            install_patches,
            packages,
            update_agent,
            release_root,
            platform,
            interpreter,
            reason,
            key,
            timeout,
            valid_for,
            no_wait,
            yes,
            json,
        } => {
            let session = Session::load()?;
            let trust = crate::commands::trust::fetch_trust(&session, &tenant).await?;
            let (body, interpreter) = match &library {
                Some(reference) => {
                    let (body, interpreter) = crate::commands::scripts::library_script(
                        &session,
                        &tenant,
                        trust.policy.as_ref(),
                        reference,
                        &params,
                    )
                    .await?;
                    (Some(body), Some(interpreter.name().to_owned()))
                }
                None => (None, interpreter),
            };
            let body = match (&script, &command, body) {
                (_, _, Some(body)) => body,
                (Some(path), _, None) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    String::from_utf8(bytes).context("the script is not UTF-8 text")?
                }
                (None, Some(command), None) => format!("{}\n", command.trim_end()),
                (None, None, None) => String::new(),
            };
            let action = if inventory_refresh {
                ensure!(
                    interpreter.is_none(),
                    "an inventory refresh runs no script: drop --interpreter"
                );
                JobAction::InventoryRefresh
            } else if let Some(version) = &update_agent {
                ensure!(
                    interpreter.is_none(),
                    "an agent update runs no script: drop --interpreter"
                );
                let root_file = release_root
                    .as_ref()
                    .context("--update-agent needs --release-root")?;
                let root = std::fs::read(root_file)
                    .with_context(|| format!("cannot read {}", root_file.display()))?;
                let (name, file) = crate::commands::releases::verified_release(
                    &session, &root, version, &platform,
                )
                .await?;
                let hash = file
                    .hashes
                    .get("sha256")
                    .map(String::as_str)
                    .unwrap_or_default();
                let binary_sha256: [u8; 32] = hex::decode(hash)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .with_context(|| format!("{name}: the signed sha256 is not 32 bytes of hex"))?;
                eprintln!(
                    "Release {name}: sha256 {hash}, {} bytes (verified from {}).",
                    file.length,
                    root_file.display()
                );
                JobAction::UpdateAgent {
                    version: version.clone(),
                    binary_sha256,
                }
            } else if install_patches {
                ensure!(
                    interpreter.is_none(),
                    "installing patches runs no script: drop --interpreter"
                );
                if let Some(bad) = packages
                    .iter()
                    .find(|p| !bulwark_policy::job::is_package_name(p))
                {
                    bail!("{bad:?} is not a Debian package name");
                }
                JobAction::InstallPatches { packages }
            } else {
                let interpreter = match &interpreter {
                    Some(name) => Interpreter::from_name(name).with_context(|| {
                        format!("unknown interpreter {name:?}: sh, bash or python3")
                    })?,
                    None => Interpreter::from_shebang(body.as_bytes()),
                };
                JobAction::RunScript {
                    interpreter,
                    script_sha256: ScriptHash(Sha256::digest(body.as_bytes()).into()),
                }
            };
            let class = class_under(&action, trust.policy.as_ref());
            let wanted = if all {
                Targets::All
            } else if !tags.is_empty() || group.is_some() {
                Targets::Labelled {
                    tags: &tags,
                    group: group.as_deref(),
                }
            } else {
                Targets::Named(&targets)
            };
            let targets = resolve_targets(&session, &tenant, wanted).await?;
            let now = unix_now();
            let mut job_id = [0u8; 16];
            let mut nonce = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut job_id);
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let statement = JobStatement {
                tenant: trust.tenant_id.clone(),
                job_id,
                targets,
                class,
                action,
                // A minute of slack for clocks that disagree a little.
                not_before: now.saturating_sub(60),
                expires_at: now + u64::from(valid_for.max(1)) * 60,
                nonce,
                reason,
                timeout_secs: timeout,
                tenant_name: tenant.clone(),
            };
            statement
                .validate(&Limits::default())
                .map_err(|e| anyhow::anyhow!("the job is not valid: {e}"))?;
            let mut signed = Signed::new(&statement);
            if !yes && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                println!(
                    "{}",
                    render_statement(&statement, &signed, trust.policy.as_ref(), now)
                );
                if !body.is_empty() {
                    println!(
                        "\n--- script ---\n{}\n--- end of script ---",
                        crate::commands::scripts::visible(&body)
                    );
                }
                let answer = crate::output::prompt_line("\nSign and submit this job? Type yes: ")?;
                ensure!(answer.trim() == "yes", "not signed");
            }
            let store = KeyStore::open_default()?;
            let signing_key =
                store.load_signing_key(&key, &crate::commands::keys::passphrase(false)?)?;
            ensure_registered(&session, &key, &signing_key).await?;
            signed.sign(&signing_key);
            let path = format!("/api/v1/tenants/{}/jobs", path_segment(&tenant)?);
            let request = JobRequest {
                envelope: B64.encode(signed.to_bytes()),
                script: body,
            };
            let view: JobView = session.post(&path, &request).await?;
            let id = view.id.clone();
            if no_wait || view.state == "pending" {
                if json {
                    return print_json(&view);
                }
                print_job(&view, false);
                if view.state == "pending" {
                    eprintln!(
                        "\nThe policy needs more signatures: another operator approves with `bulwark job approve {id}`."
                    );
                }
                return Ok(());
            }
            let view = follow(&session, &id, !json).await?;
            if json {
                print_json(&view)?;
            } else {
                print_job(&view, false);
            }
            exit_status(&view)
        }
        JobCommand::List { tenant, json } => {
            let session = Session::load()?;
            let jobs: Vec<JobView> = session
                .get(&format!("/api/v1/tenants/{}/jobs", path_segment(&tenant)?))
                .await?;
            if json {
                return print_json(&jobs);
            }
            let rows: Vec<Vec<Cell>> = jobs
                .iter()
                .map(|j| {
                    let done = finished(&j.targets);
                    let total = j.targets.len();
                    vec![
                        Cell::from(j.id.as_str()),
                        Cell::from(j.status.as_str()),
                        Cell::from(j.class.as_str()),
                        Cell::from(format!("{done}/{total}")),
                        Cell::from(j.requested_by.as_str()),
                        Cell::from(j.created_at.as_str()),
                        Cell::from(j.reason.as_str()),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["ID", "STATUS", "CLASS", "DONE", "BY", "CREATED", "REASON"],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        JobCommand::Show {
            id, follow: true, ..
        } => {
            let session = Session::load()?;
            let view = follow_output(&session, &id).await?;
            print_job(&view, false);
            exit_status(&view)
        }
        JobCommand::Show { id, wait, json, .. } => {
            let session = Session::load()?;
            let view: JobView = if wait {
                follow(&session, &id, !json).await?
            } else {
                session.get(&job_path(&id)?).await?
            };
            if json {
                print_json(&view)
            } else {
                print_job(&view, true);
                Ok(())
            }
        }
        JobCommand::Approve {
            id,
            key,
            passkey,
            yes,
            otp,
            json,
        } => {
            let session = Session::load()?;
            let view: JobView = session.get(&job_path(&id)?).await?;
            // What the approver signs is what they saw, and what they see is
            // rendered from the statement's bytes, never from the server's
            // description of it. The script shown must hash to the signed hash.
            let signed = envelope_of(&view)?;
            let statement: JobStatement = signed
                .statement(&Limits::default())
                .map_err(|e| anyhow::anyhow!("the job's envelope is not valid: {e}"))?;
            statement
                .validate(&Limits::default())
                .map_err(|e| anyhow::anyhow!("the job's statement is not valid: {e}"))?;
            ensure!(
                hex::encode(statement.job_id) == id.trim().to_ascii_lowercase(),
                "the server answered job {id} with the statement of job {}: refusing to approve",
                hex::encode(statement.job_id)
            );
            let script = view.script.as_deref().unwrap_or_default();
            match statement.action.script_sha256() {
                Some(hash) => ensure!(
                    <[u8; 32]>::from(Sha256::digest(script.as_bytes())) == hash.0,
                    "the script the server shows does not match the signed hash: refusing to approve"
                ),
                None => ensure!(
                    script.is_empty(),
                    "the server shows a script for a job that runs none: refusing to approve"
                ),
            }
            // Signer names come from the tenant's policy as this machine
            // verified it (the root chain replayed here), not the server's list.
            let trust =
                crate::commands::trust::fetch_trust(&session, &statement.tenant_name).await?;
            ensure!(
                trust.tenant_id == statement.tenant,
                "tenant {:?} is {} per its trust root, but the job is for tenant id {}: refusing to approve",
                statement.tenant_name,
                trust.tenant_id,
                statement.tenant
            );
            // Each target's key is held to this machine's pins too: an
            // approval never adds weight to a job steered to a swapped key.
            let keyed: Vec<_> = statement
                .targets
                .iter()
                .filter_map(|t| {
                    t.device_key.map(|key| {
                        (
                            crate::pins::DevicePin {
                                device_id: t.device_id.clone(),
                                key,
                                hostname: t.hostname.clone(),
                            },
                            crate::pins::NamedBy::Other,
                        )
                    })
                })
                .collect();
            crate::pins::hold_devices(session.server(), &statement.tenant_name, &keyed)?;
            let summary = render_statement(&statement, &signed, trust.policy.as_ref(), unix_now());
            print!("{summary}");
            if !script.is_empty() {
                println!("\n--- script (sha256 verified) ---\n{script}\n--- end of script ---");
            }
            if !yes {
                let answer = crate::output::prompt_line("\nSign and approve this job? Type yes: ")?;
                ensure!(answer.trim() == "yes", "not approved");
            }
            let body = match passkey {
                Some(name) => {
                    let passkey = crate::commands::passkeys::load(&name)?;
                    let assertion = crate::commands::passkeys::approve(
                        &passkey,
                        &signed,
                        summary,
                        script.to_owned(),
                    )
                    .await?;
                    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
                    ApprovalRequest {
                        key_id: hex::encode(passkey.key().id().0),
                        signature: None,
                        webauthn: Some(WebAuthnApproval {
                            authenticator_data: b64(&assertion.authenticator_data),
                            client_data_json: b64(&assertion.client_data_json),
                            signature: b64(&assertion.signature),
                        }),
                    }
                }
                None => {
                    let store = KeyStore::open_default()?;
                    let signing_key =
                        store.load_signing_key(&key, &crate::commands::keys::passphrase(false)?)?;
                    ensure_registered(&session, &key, &signing_key).await?;
                    let mut signed = signed;
                    signed.sign(&signing_key);
                    let entry = signed.signatures.last().context("signature added")?;
                    ApprovalRequest {
                        key_id: hex::encode(entry.key_id.0),
                        signature: Some(B64.encode(entry.signature)),
                        webauthn: None,
                    }
                }
            };
            let reply: JobView = session
                .post_privileged(
                    &format!("{}/approvals", job_path(&id)?),
                    &body,
                    otp.as_deref(),
                )
                .await?;
            if json {
                print_json(&reply)
            } else {
                println!(
                    "\nSigned. The job is {} ({}).",
                    reply.state,
                    quorum_text(reply.quorum.as_ref())
                );
                Ok(())
            }
        }
        JobCommand::Cancel { id, reason, otp } => {
            let session = Session::load()?;
            let reply: JobView = session
                .post_privileged(
                    &format!("{}/cancel", job_path(&id)?),
                    &CancelRequest { reason },
                    otp.as_deref(),
                )
                .await?;
            println!("The job is {}.", reply.status.as_str());
            for t in &reply.targets {
                if t.status == TargetStatus::Running && t.protocol_version.is_some_and(|v| v < 3) {
                    println!(
                        "{}: its agent is too old to be told (protocol {}); the job runs to its end there.",
                        Cell::from(t.hostname.as_str()).text,
                        or_dash(t.protocol_version)
                    );
                }
            }
            Ok(())
        }
        JobCommand::Reject { id, reason, otp } => {
            let session = Session::load()?;
            let reply: JobView = session
                .post_privileged(
                    &format!("{}/reject", job_path(&id)?),
                    &RejectRequest { reason },
                    otp.as_deref(),
                )
                .await?;
            println!("The job is {}.", reply.state);
            Ok(())
        }
    }
}

/// Registers the public half of `key` with the caller's account the first
/// time it signs a job (the server accepts jobs only under keys registered
/// to the person submitting them).
pub(crate) async fn ensure_registered(
    session: &Session,
    name: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<()> {
    let public = B64.encode(key.verifying_key().to_bytes());
    let registered: Vec<SigningKeyView> = session.get("/api/v1/signing-keys").await?;
    let own = bulwark_policy::PublicKey::Ed25519(key.verifying_key().to_bytes());
    let key_id = hex::encode(own.id().0);
    if registered.iter().any(|k| k.key_id == key_id) {
        return Ok(());
    }
    let request = SigningKeyRequest {
        name: name.to_owned(),
        public_key: Some(public),
        webauthn_credential: None,
    };
    session
        .post::<_, SigningKeyView>("/api/v1/signing-keys", &request)
        .await
        .with_context(|| format!("registering the public key of {name} with your account"))?;
    eprintln!(
        "Registered the public key of {name} ({}) with your account.",
        &key_id[..16]
    );
    Ok(())
}

fn job_path(id: &str) -> Result<String> {
    Ok(format!("/api/v1/jobs/{}", path_segment(id)?))
}

fn envelope_of(view: &JobView) -> Result<Signed> {
    let bytes = B64
        .decode(view.envelope.as_deref().unwrap_or_default())
        .context("the job's envelope is not base64")?;
    Signed::from_bytes(&bytes, &Limits::default())
        .map_err(|e| anyhow::anyhow!("the job's envelope is not valid: {e}"))
}

/// The class `action` is under the tenant's verified policy (the agent
/// derives it the same way); without a policy, as under an empty one.
fn class_under(action: &JobAction, policy: Option<&Policy>) -> ActionClass {
    match policy {
        Some(policy) => action.class(policy),
        None => match action {
            JobAction::RunScript { .. } => ActionClass::RunScript,
            other => other.class(&empty_policy()),
        },
    }
}

fn empty_policy() -> Policy {
    Policy {
        tenant: String::new(),
        version: 0,
        expires_at: 0,
        operators: Vec::new(),
        quorums: Vec::new(),
        fan_out_limit: 0,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: None,
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    }
}

/// What an approver reads before signing, from the statement's own bytes
/// and the policy this machine verified: nothing here is the server's text.
pub(crate) fn render_statement(
    job: &JobStatement,
    signed: &Signed,
    policy: Option<&Policy>,
    now: u64,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let derived = policy.map(|p| job.action.class(p));
    let _ = writeln!(out, "Job        {}", hex::encode(job.job_id));
    let _ = writeln!(out, "Tenant     {} (id {})", job.tenant_name, job.tenant);
    let _ = writeln!(out, "Action     {}", job.action.describe());
    match derived {
        Some(class) if class != job.class => {
            let _ = writeln!(
                out,
                "Class      {} -- BUT THE ACTION IS {}: agents will refuse this job",
                job.class.name(),
                class.name()
            );
        }
        _ => {
            let _ = writeln!(out, "Class      {}", job.class.name());
        }
    }
    let _ = writeln!(out, "Reason     {}", job.reason);
    let _ = writeln!(
        out,
        "Valid      {} to {}{}",
        crate::commands::trust::date_text(job.not_before),
        crate::commands::trust::date_text(job.expires_at),
        if now >= job.expires_at {
            " (EXPIRED)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "Timeout    {} s", job.timeout_secs);
    let _ = writeln!(out, "Targets    {} device(s):", job.targets.len());
    for t in &job.targets {
        let _ = writeln!(
            out,
            "  {:<24} {}{}",
            t.hostname,
            t.device_id,
            t.device_key
                .map(|k| format!("  key {}", &hex::encode(k)[..16]))
                .unwrap_or_default()
        );
    }
    for entry in &signed.signatures {
        let name = policy
            .and_then(|p| p.operators.iter().find(|o| o.key.id() == entry.key_id))
            .map_or("(not in the tenant's verified policy)", |o| o.name.as_str());
        let _ = writeln!(
            out,
            "Signed by  {name} ({}){}",
            &hex::encode(entry.key_id.0)[..16],
            if entry.webauthn.is_some() {
                ", passkey"
            } else {
                ""
            }
        );
    }
    if let Some(progress) = policy.and_then(|p| bulwark_policy::quorum_progress(signed, job, p)) {
        let _ = writeln!(
            out,
            "Quorum     {} of {} signatures{}",
            progress.have,
            progress.need,
            if progress.customer_required && !progress.customer_signed {
                ", a customer signature is still needed"
            } else {
                ""
            }
        );
    }
    out
}

/// How many of the targets are done with the job.
fn finished(targets: &[JobTargetView]) -> usize {
    targets.iter().filter(|t| t.status.is_final()).count()
}

/// `bulwark job show --follow`: prints each device's output as it arrives
/// (polling the output after the last piece seen), then the truncation
/// marker of each device whose output was cut, until the job ends.
async fn follow_output(session: &Session, id: &str) -> Result<JobView> {
    let path = job_path(id)?;
    let mut view: JobView = session.get(&path).await?;
    let mut cursors: std::collections::HashMap<String, Option<i64>> =
        std::collections::HashMap::new();
    let mut told_old = std::collections::HashSet::new();
    let several = view.targets.len() > 1;
    loop {
        let ended = view.status.is_final();
        for t in &view.targets {
            if t.protocol_version.is_some_and(|v| v < 3) && told_old.insert(t.device_id.clone()) {
                eprintln!(
                    "{}: agent too old for live output (protocol {}); its output shows when it ends.",
                    Cell::from(t.hostname.as_str()).text,
                    or_dash(t.protocol_version)
                );
            }
            let cursor = cursors.entry(t.device_id.clone()).or_default();
            loop {
                let mut url = format!(
                    "{path}/output?device={}",
                    crate::client::path_segment(&t.device_id)?
                );
                if let Some(after) = cursor {
                    url.push_str(&format!("&after={after}"));
                }
                let out: JobOutputView = session.get(&url).await?;
                let more = out.chunks.len() >= 256;
                for chunk in &out.chunks {
                    print_piece(several.then_some(t.hostname.as_str()), chunk);
                }
                *cursor = out.next;
                if !more {
                    break;
                }
            }
        }
        if ended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        view = session.get(&path).await?;
    }
    for t in &view.targets {
        if t.live_truncated > 0 {
            let who = if several {
                format!("[{}] ", Cell::from(t.hostname.as_str()).text)
            } else {
                String::new()
            };
            println!("{who}[... {} bytes truncated ...]", t.live_truncated);
        }
    }
    Ok(view)
}

/// One piece of output, escaped for the terminal; stderr goes to stderr.
fn print_piece(device: Option<&str>, chunk: &bulwark_api::jobs::OutputChunkView) {
    use std::io::Write;
    let mut text = String::new();
    if chunk.skipped > 0 {
        text.push_str(&format!("[... {} bytes not received ...]\n", chunk.skipped));
    }
    text.push_str(&terminal_text(&chunk.text));
    if let Some(device) = device {
        let prefix = format!("[{}] ", Cell::from(device).text);
        text = text
            .split_inclusive('\n')
            .map(|line| format!("{prefix}{line}"))
            .collect();
    }
    let _ = match chunk.stream {
        OutputStreamView::Stdout => {
            let mut out = std::io::stdout();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        OutputStreamView::Stderr => {
            let mut err = std::io::stderr();
            err.write_all(text.as_bytes()).and_then(|()| err.flush())
        }
    };
}

/// Polls the job until every target has a result (or the job cannot run),
/// with a progress bar on a terminal.
async fn follow(session: &Session, id: &str, show_progress: bool) -> Result<JobView> {
    let path = job_path(id)?;
    let mut view: JobView = session.get(&path).await?;
    let total = view.targets.len();
    let bar = if show_progress {
        indicatif::ProgressBar::new(u64::try_from(total).unwrap_or_default())
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} devices finished {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let done = finished(&view.targets);
        bar.set_position(u64::try_from(done).unwrap_or_default());
        bar.set_message(format!("(job {})", view.status.as_str()));
        if done == total || view.status.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        view = session.get(&path).await?;
    }
    bar.finish_and_clear();
    Ok(view)
}

fn exit_status(view: &JobView) -> Result<()> {
    let failed = view
        .targets
        .iter()
        .filter(|t| t.status != TargetStatus::Succeeded)
        .count();
    ensure!(
        failed == 0,
        "{failed} device(s) did not succeed (the job is {})",
        view.status.as_str()
    );
    Ok(())
}

fn quorum_text(quorum: Option<&QuorumView>) -> String {
    let Some(quorum) = quorum else {
        return "the policy does not permit this class".into();
    };
    let mut out = format!("{} of {} signatures", quorum.have, quorum.need);
    if quorum.customer_required {
        out.push_str(if quorum.customer_signed {
            ", customer signed"
        } else {
            ", a customer signature is still needed"
        });
    }
    out
}

fn print_job(view: &JobView, with_script: bool) {
    println!("Job        {}", view.id);
    println!("Tenant     {}", view.tenant);
    println!("Status     {} ({})", view.status.as_str(), view.state);
    if let Some(at) = &view.cancelled_at {
        println!(
            "Cancelled  {at} by {}: {}",
            Cell::from(or_dash(view.cancelled_by.as_deref())).text,
            Cell::from(or_dash(view.cancel_reason.as_deref())).text
        );
    }
    println!("Class      {}", view.class);
    println!("Asked by   {}", view.requested_by);
    println!("Reason     {}", view.reason);
    println!("Quorum     {}", quorum_text(view.quorum.as_ref()));
    println!("Valid      {} to {}", view.not_before, view.expires_at);
    println!("Timeout    {} s", view.timeout_secs);
    if let Some(delay) = &view.mass_action_delay {
        let from = delay
            .runs_from
            .as_deref()
            .map(|at| format!(", not before about {at}"))
            .unwrap_or_default();
        println!(
            "Held       a mass action: waits {} s after it enters the witnessed log{from}; the tenant can freeze meanwhile",
            delay.delay_secs
        );
    }
    println!("Script     sha256 {}", view.script_sha256);
    for s in &view.signers {
        let name = s.name.as_deref().unwrap_or("(not in the current policy)");
        println!(
            "Signed by  {name} ({})",
            &s.key_id[..16.min(s.key_id.len())]
        );
    }
    if with_script && let Some(script) = &view.script {
        println!("\n--- script ---\n{script}\n--- end of script ---");
    }
    let rows: Vec<Vec<Cell>> = view
        .targets
        .iter()
        .map(|t| {
            let detail = match &t.refusal_code {
                None => first_line(t.stdout.as_deref()),
                Some(code) => format!("{code}: {}", or_dash(t.refusal_reason.as_deref())),
            };
            let took = t
                .duration_ms
                .map(|ms| format!("{}.{:01} s", ms / 1000, (ms % 1000) / 100));
            vec![
                Cell::from(t.hostname.as_str()),
                Cell::from(t.status.label()),
                Cell::from(or_dash(t.exit_code)),
                Cell::from(or_dash(took)),
                Cell::from(detail),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        render_table(
            &["DEVICE", "STATUS", "EXIT", "TOOK", "DETAIL"],
            &rows,
            use_colour()
        )
    );
    for t in &view.targets {
        if let Some(p) = &t.patches {
            print!("{}", render_patches(&t.hostname, p));
        }
    }
    if with_script {
        for t in &view.targets {
            for (stream, out) in [("stdout", &t.stdout), ("stderr", &t.stderr)] {
                if let Some(out) = out.as_deref().filter(|s| !s.is_empty()) {
                    println!(
                        "\n--- {} {stream} ---\n{}",
                        Cell::from(t.hostname.as_str()).text,
                        terminal_text(out.trim_end())
                    );
                }
            }
        }
    }
}

/// What an install-patches job did on one device: each package installed
/// (old -> new), each failure, and whether a reboot is pending.
fn render_patches(hostname: &str, p: &bulwark_api::jobs::PatchReportView) -> String {
    let mut out = format!(
        "\n{}: {} installed, {} failed{}\n",
        Cell::from(hostname).text,
        p.installed.len(),
        p.failed.len(),
        if p.reboot_required {
            "; a reboot is required"
        } else {
            ""
        }
    );
    let mut rows: Vec<Vec<Cell>> = p
        .installed
        .iter()
        .map(|i| {
            vec![
                Cell::from(i.name.as_str()),
                Cell::from("installed"),
                Cell::from(format!(
                    "{} -> {}",
                    if i.old_version.is_empty() {
                        "(new)"
                    } else {
                        &i.old_version
                    },
                    i.new_version
                )),
            ]
        })
        .collect();
    rows.extend(p.failed.iter().map(|f| {
        vec![
            Cell::from(f.name.as_str()),
            Cell::from("failed"),
            Cell::from(f.reason.as_str()),
        ]
    }));
    if !rows.is_empty() {
        out.push_str(&render_table(
            &["PACKAGE", "RESULT", "DETAIL"],
            &rows,
            false,
        ));
    }
    out
}

fn first_line(value: Option<&str>) -> String {
    value
        .and_then(|s| s.lines().next())
        .unwrap_or_default()
        .chars()
        .take(60)
        .collect()
}
