//! `bulwark job …`: sign a job on this machine, submit it, approve others'
//! jobs by signing them, and follow per-device results.
//!
//! The private key stays in the local key store (`bulwark keys`); the
//! server receives the signed envelope and relays it. Approvers are shown
//! exactly what will run, and the CLI checks that the script shown is the
//! one whose hash they sign.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::{JobStatement, Limits, Signed};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::keys::KeyStore;
use crate::operator::{
    Cell, Session, items, path_segment, print_json, render_table, text, unix_now, use_colour,
};

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Sign a script as a job for some devices of a tenant, submit it and follow the results.
    Run {
        #[arg(long)]
        tenant: String,
        /// Device ids or hostnames, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<String>,
        /// The script to run (sh, or bash with a `#!/bin/bash` first line).
        #[arg(long, value_name = "FILE")]
        script: std::path::PathBuf,
        /// Why: shown to approvers, agents' logs and auditors.
        #[arg(long, default_value = "")]
        reason: String,
        /// Action class: run-script, run-allow-listed-script, inventory-refresh,
        /// install-patches, change-agent-settings, update-agent, restore-backup.
        #[arg(long, default_value = "run-script")]
        class: String,
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
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending job by signing it with a local key.
    Approve {
        id: String,
        #[arg(long, default_value = "operator")]
        key: String,
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
            script,
            reason,
            class,
            key,
            timeout,
            valid_for,
            no_wait,
            json,
        } => {
            let session = Session::load()?;
            let body = std::fs::read(&script)
                .with_context(|| format!("cannot read {}", script.display()))?;
            let body = String::from_utf8(body).context("the script is not UTF-8 text")?;
            let class = crate::trust::parse_class(&class)?;
            let tenant_id = tenant_id(&session, &tenant).await?;
            let targets = resolve_targets(&session, &tenant, &targets).await?;
            let now = unix_now();
            let mut job_id = [0u8; 16];
            let mut nonce = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut job_id);
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let statement = JobStatement {
                tenant: tenant_id,
                job_id,
                targets,
                class,
                script_sha256: ScriptHash(Sha256::digest(body.as_bytes()).into()),
                // A minute of slack for clocks that disagree a little.
                not_before: now.saturating_sub(60),
                expires_at: now + u64::from(valid_for.max(1)) * 60,
                nonce,
                reason,
                timeout_secs: timeout,
            };
            let mut signed = Signed::new(&statement);
            let store = KeyStore::open_default()?;
            let signing_key = store.load_signing_key(&key, &crate::keys::passphrase(false)?)?;
            ensure_registered(&session, &key, &signing_key).await?;
            signed.sign(&signing_key);
            let path = format!("/api/v1/tenants/{}/jobs", path_segment(&tenant)?);
            let view = session
                .post(
                    &path,
                    &json!({ "envelope": B64.encode(signed.to_bytes()), "script": body }),
                )
                .await?;
            let id = text(&view["id"]);
            if no_wait || view["state"] == "pending" {
                if json {
                    return print_json(&view);
                }
                print_job(&view, false);
                if view["state"] == "pending" {
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
            let jobs = session
                .get(&format!("/api/v1/tenants/{}/jobs", path_segment(&tenant)?))
                .await?;
            if json {
                return print_json(&jobs);
            }
            let rows: Vec<Vec<Cell>> = items(&jobs)?
                .iter()
                .map(|j| {
                    let done = j["targets"]
                        .as_array()
                        .map(|t| t.iter().filter(|t| is_final(&t["state"])).count())
                        .unwrap_or_default();
                    let total = j["targets"].as_array().map(Vec::len).unwrap_or_default();
                    vec![
                        Cell::from(text(&j["id"])),
                        Cell::from(text(&j["state"])),
                        Cell::from(text(&j["class"])),
                        Cell::from(format!("{done}/{total}")),
                        Cell::from(text(&j["requested_by"])),
                        Cell::from(text(&j["created_at"])),
                        Cell::from(text(&j["reason"])),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["ID", "STATE", "CLASS", "DONE", "BY", "CREATED", "REASON"],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        JobCommand::Show { id, wait, json } => {
            let session = Session::load()?;
            let view = if wait {
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
            yes,
            otp,
            json,
        } => {
            let session = Session::load()?;
            let view = session.get(&job_path(&id)?).await?;
            // What the approver signs is what they saw: the envelope's hash
            // must be the hash of the script shown.
            let signed = envelope_of(&view)?;
            let statement: JobStatement = signed
                .statement(&Limits::default())
                .map_err(|e| anyhow::anyhow!("the job's envelope is not valid: {e}"))?;
            let script = view["script"].as_str().unwrap_or_default();
            ensure!(
                <[u8; 32]>::from(Sha256::digest(script.as_bytes())) == statement.script_sha256.0,
                "the script the server shows does not match the signed hash: refusing to approve"
            );
            print_job(&view, true);
            if !yes {
                let answer =
                    crate::operator::prompt_line("\nSign and approve this job? Type yes: ")?;
                ensure!(answer.trim() == "yes", "not approved");
            }
            let store = KeyStore::open_default()?;
            let signing_key = store.load_signing_key(&key, &crate::keys::passphrase(false)?)?;
            ensure_registered(&session, &key, &signing_key).await?;
            let mut signed = signed;
            signed.sign(&signing_key);
            let entry = signed.signatures.last().context("signature added")?;
            let reply = session
                .post_privileged(
                    &format!("{}/approvals", job_path(&id)?),
                    &json!({
                        "key_id": hex::encode(entry.key_id.0),
                        "signature": B64.encode(entry.signature),
                    }),
                    otp.as_deref(),
                )
                .await?;
            if json {
                print_json(&reply)
            } else {
                println!(
                    "\nSigned. The job is {} ({}).",
                    text(&reply["state"]),
                    quorum_text(&reply["quorum"])
                );
                Ok(())
            }
        }
        JobCommand::Reject { id, reason, otp } => {
            let session = Session::load()?;
            let reply = session
                .post_privileged(
                    &format!("{}/reject", job_path(&id)?),
                    &json!({ "reason": reason }),
                    otp.as_deref(),
                )
                .await?;
            println!("The job is {}.", text(&reply["state"]));
            Ok(())
        }
    }
}

/// Registers the public half of `key` with the caller's account the first
/// time it signs a job (the server accepts jobs only under keys registered
/// to the person submitting them).
async fn ensure_registered(
    session: &Session,
    name: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<()> {
    let public = B64.encode(key.verifying_key().to_bytes());
    let registered = session.get("/api/v1/signing-keys").await?;
    let own = bulwark_policy::PublicKey::Ed25519(key.verifying_key().to_bytes());
    let key_id = hex::encode(own.id().0);
    if items(&registered)?
        .iter()
        .any(|k| k["key_id"] == key_id.as_str())
    {
        return Ok(());
    }
    session
        .post(
            "/api/v1/signing-keys",
            &json!({ "name": name, "public_key": public }),
        )
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

fn envelope_of(view: &Value) -> Result<Signed> {
    let bytes = B64
        .decode(view["envelope"].as_str().unwrap_or_default())
        .context("the job's envelope is not base64")?;
    Signed::from_bytes(&bytes, &Limits::default())
        .map_err(|e| anyhow::anyhow!("the job's envelope is not valid: {e}"))
}

/// The tenant's id: statements name tenants by id, people by name.
pub async fn tenant_id(session: &Session, name: &str) -> Result<String> {
    let tenants = session.get("/api/v1/tenants").await?;
    items(&tenants)?
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_str().map(str::to_owned))
        .with_context(|| format!("no tenant named {name:?} among yours"))
}

/// Device ids for the given ids or hostnames, each of them a device of the tenant.
async fn resolve_targets(
    session: &Session,
    tenant: &str,
    wanted: &[String],
) -> Result<Vec<String>> {
    let devices = session
        .get(&format!(
            "/api/v1/tenants/{}/devices",
            path_segment(tenant)?
        ))
        .await?;
    let devices = items(&devices)?;
    let mut ids = Vec::new();
    for want in wanted.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        let matches: Vec<&Value> = devices
            .iter()
            .filter(|d| d["id"] == want || d["hostname"] == want)
            .collect();
        match matches.as_slice() {
            [one] => ids.push(text(&one["id"])),
            [] => bail!("no device {want:?} in tenant {tenant}"),
            _ => bail!("several devices are called {want:?}: name them by id"),
        }
    }
    ids.sort();
    ids.dedup();
    ensure!(!ids.is_empty(), "no targets given");
    Ok(ids)
}

fn is_final(state: &Value) -> bool {
    matches!(
        state.as_str(),
        Some("succeeded" | "failed" | "timed_out" | "refused")
    )
}

/// Polls the job until every target has a result (or the job cannot run),
/// with a progress bar on a terminal.
async fn follow(session: &Session, id: &str, show_progress: bool) -> Result<Value> {
    let path = job_path(id)?;
    let mut view = session.get(&path).await?;
    let total = view["targets"].as_array().map(Vec::len).unwrap_or_default();
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
        let done = view["targets"]
            .as_array()
            .map(|t| t.iter().filter(|t| is_final(&t["state"])).count())
            .unwrap_or_default();
        bar.set_position(u64::try_from(done).unwrap_or_default());
        bar.set_message(format!("(job {})", text(&view["state"])));
        if done == total || matches!(view["state"].as_str(), Some("rejected" | "expired")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        view = session.get(&path).await?;
    }
    bar.finish_and_clear();
    Ok(view)
}

fn exit_status(view: &Value) -> Result<()> {
    let failed = view["targets"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["state"] != "succeeded").count())
        .unwrap_or_default();
    ensure!(failed == 0, "{failed} device(s) did not succeed");
    Ok(())
}

fn quorum_text(quorum: &Value) -> String {
    if quorum.is_null() {
        return "the policy does not permit this class".into();
    }
    let mut out = format!("{} of {} signatures", quorum["have"], quorum["need"]);
    if quorum["customer_required"] == true {
        out.push_str(if quorum["customer_signed"] == true {
            ", customer signed"
        } else {
            ", a customer signature is still needed"
        });
    }
    out
}

fn print_job(view: &Value, with_script: bool) {
    println!("Job        {}", text(&view["id"]));
    println!("Tenant     {}", text(&view["tenant"]));
    println!("State      {}", text(&view["state"]));
    println!("Class      {}", text(&view["class"]));
    println!("Asked by   {}", text(&view["requested_by"]));
    println!("Reason     {}", text(&view["reason"]));
    println!("Quorum     {}", quorum_text(&view["quorum"]));
    println!(
        "Valid      {} to {}",
        text(&view["not_before"]),
        text(&view["expires_at"])
    );
    println!("Timeout    {} s", text(&view["timeout_secs"]));
    println!("Script     sha256 {}", text(&view["script_sha256"]));
    if let Some(signers) = view["signers"].as_array() {
        for s in signers {
            let name = s["name"].as_str().unwrap_or("(not in the current policy)");
            println!(
                "Signed by  {name} ({})",
                &text(&s["key_id"])[..16.min(text(&s["key_id"]).len())]
            );
        }
    }
    if with_script && let Some(script) = view["script"].as_str() {
        println!("\n--- script ---\n{script}\n--- end of script ---");
    }
    let rows: Vec<Vec<Cell>> = view["targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| {
                    let detail = if t["refusal_code"].is_null() {
                        first_line(&t["stdout"])
                    } else {
                        format!(
                            "{}: {}",
                            text(&t["refusal_code"]),
                            text(&t["refusal_reason"])
                        )
                    };
                    vec![
                        Cell::from(text(&t["hostname"])),
                        Cell::from(text(&t["state"])),
                        Cell::from(text(&t["exit_code"])),
                        Cell::from(detail),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    println!();
    print!(
        "{}",
        render_table(&["DEVICE", "STATE", "EXIT", "DETAIL"], &rows, use_colour())
    );
    if with_script && let Some(targets) = view["targets"].as_array() {
        for t in targets {
            for stream in ["stdout", "stderr"] {
                if let Some(out) = t[stream].as_str().filter(|s| !s.is_empty()) {
                    println!(
                        "\n--- {} {stream} ---\n{}",
                        text(&t["hostname"]),
                        out.trim_end()
                    );
                }
            }
        }
    }
}

fn first_line(value: &Value) -> String {
    value
        .as_str()
        .and_then(|s| s.lines().next())
        .unwrap_or_default()
        .chars()
        .take(60)
        .collect()
}
