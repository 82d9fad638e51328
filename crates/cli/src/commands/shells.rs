//! `bulwark shell …`: ask for a remote shell on one device, approve
//! another person's request, open the shell, revoke a grant, and read the
//! sessions and recordings (RFD 0015).
//!
//! Everything that decides is done here, on the operator's machine: the
//! grant is rendered from its own bytes before anyone signs it; before a
//! shell opens, the grant must verify under the tenant policy this machine
//! verified itself (`fetch_trust`, pinned root) with the agent's own
//! function; the device's answer must be signed by the key whose
//! fingerprint the grant's signers signed (the server's copy of the key is
//! used only if it hashes to that fingerprint), and the session's keys come
//! from an exchange the server only relays. A recording is accepted only if
//! it hashes to the digest the device reported.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::devices::DeviceView;
use bulwark_api::shells::{
    ShellApprovalRequest, ShellGrantRequest, ShellGrantView, ShellRevokeRequest, ShellSessionView,
};
use bulwark_policy::shell::channel::{Ephemeral, Side, establish};
use bulwark_policy::shell::{
    MAX_GRANT_SECS, RevokedGrants, SessionOpen, ShellAccount, ShellGrant, verify_answer,
    verify_grant,
};
use bulwark_policy::{AgentContext, JobTarget, KeyId, Limits, Policy, PublicKey, Signed};
use bulwark_protocol::message::{AgentMessage, ServerMessage, ShellOpen};
use bulwark_protocol::{PROTOCOL_VERSION, decode_agent_frame, encode_server_frame};
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Session, path_segment};
use crate::commands::jobs::ensure_registered;
use crate::commands::keys::KeyStore;
use crate::commands::shell_terminal::{connect, relay_terminal, terminal};
use crate::output::{Cell, or_dash, print_json, render_table, unix_now, use_colour};

/// `bulwark shell DEVICE` opens a shell; the subcommands manage grants.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ShellArgs {
    #[command(subcommand)]
    pub command: Option<ShellCommand>,
    /// The device (id, or host name with --tenant) to open a shell on,
    /// under an approved grant of yours.
    pub device: Option<String>,
    /// The device's tenant (needed to name the device by host name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The grant to open the shell under (default: your newest approved
    /// grant for the device).
    #[arg(long)]
    pub grant: Option<String>,
    /// The local signing key the grant names as grantee.
    #[arg(long, default_value = "operator")]
    pub key: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ShellCommand {
    /// Ask for a shell on a device: signs a grant naming your key, the
    /// device (id, host name and key), the account and how long.
    Request {
        /// Device id or host name.
        device: String,
        #[arg(long)]
        tenant: String,
        /// Why: shown to approvers, in the log and on the device.
        #[arg(long)]
        reason: String,
        /// How long the grant lasts: 30m, 2h (at most 8h).
        #[arg(long = "for", value_name = "DURATION", default_value = "30m")]
        duration: String,
        /// A root shell (open-admin-shell: at least two signers, one of
        /// them another operator).
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "operator")]
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve another person's grant by signing it, after reading it as
    /// rendered here from its own bytes.
    Approve {
        grant: String,
        #[arg(long, default_value = "operator")]
        key: String,
        #[arg(long)]
        yes: bool,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: its live sessions end at once, none opens again.
    Revoke {
        grant: String,
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
    /// A tenant's grants, newest first.
    Grants {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Sessions of a device (or of a tenant with --tenant).
    Sessions {
        device: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download a session's recording (asciicast v2), checked against the
    /// digest the device reported.
    Recording {
        session: String,
        /// Where to write it (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

/// "30m", "2h", "90s", "1h30m" as seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => bail!("{text:?} is not a duration like 30m or 2h"),
        };
        let n: u64 = number
            .parse()
            .with_context(|| format!("{text:?} is not a duration like 30m or 2h"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    ensure!(
        number.is_empty() && total > 0,
        "{text:?} is not a duration like 30m or 2h"
    );
    Ok(total)
}

fn grant_path(id: &str) -> Result<String> {
    Ok(format!("/api/v1/shell-grants/{}", path_segment(id.trim())?))
}

fn own_key_id(key: &ed25519_dalek::SigningKey) -> KeyId {
    PublicKey::Ed25519(key.verifying_key().to_bytes()).id()
}

/// The grant's statement from the server's view, checked to be the one asked for.
fn statement_of(view: &ShellGrantView, id: &str) -> Result<(Signed, ShellGrant)> {
    let bytes = B64
        .decode(&view.envelope)
        .context("the grant's envelope is not base64")?;
    let signed = Signed::from_bytes(&bytes, &Limits::default())
        .map_err(|e| anyhow::anyhow!("the grant's envelope is not valid: {e}"))?;
    let grant: ShellGrant = signed
        .statement(&Limits::default())
        .map_err(|e| anyhow::anyhow!("the envelope is not a shell grant: {e}"))?;
    grant
        .validate(&Limits::default())
        .map_err(|e| anyhow::anyhow!("the grant is not valid: {e}"))?;
    ensure!(
        hex::encode(grant.grant_id) == id.trim().to_ascii_lowercase(),
        "the server answered grant {id} with grant {}: refused",
        hex::encode(grant.grant_id)
    );
    Ok((signed, grant))
}

/// What a person reads before signing, from the grant's own bytes.
fn render_grant(grant: &ShellGrant, signed: &Signed, policy: Option<&Policy>) -> String {
    let name_of = |id: &KeyId| {
        policy
            .and_then(|p| p.operators.iter().find(|o| o.key.id() == *id))
            .map_or_else(|| format!("key {}", hex::encode(id.0)), |o| o.name.clone())
    };
    let signers: Vec<String> = signed
        .signatures
        .iter()
        .map(|e| name_of(&e.key_id))
        .collect();
    let text = Cell::from(format!(
        "Shell grant {}\n  tenant:   {} ({})\n  device:   {} ({}), key {}\n  account:  {}\n  grantee:  {}\n  valid:    {} to {} ({} minutes)\n  reason:   {}\n  signed by: {}\n",
        hex::encode(grant.grant_id),
        grant.tenant_name,
        grant.tenant,
        grant.device.hostname,
        grant.device.device_id,
        grant.device.device_key.map_or("-".into(), hex::encode),
        match grant.account {
            ShellAccount::Root => "root (admin shell)",
            ShellAccount::Unprivileged => "the unprivileged shell account",
        },
        name_of(&grant.grantee),
        grant.not_before,
        grant.expires_at,
        grant.expires_at.saturating_sub(grant.not_before) / 60,
        grant.reason,
        if signers.is_empty() {
            "-".into()
        } else {
            signers.join(", ")
        },
    ));
    text.text
}

async fn find_device(session: &Session, tenant: Option<&str>, want: &str) -> Result<DeviceView> {
    match tenant {
        Some(tenant) => {
            let devices: Vec<DeviceView> = session
                .get(&format!(
                    "/api/v1/tenants/{}/devices",
                    path_segment(tenant)?
                ))
                .await?;
            let matches: Vec<DeviceView> = devices
                .into_iter()
                .filter(|d| d.id == want || d.hostname.eq_ignore_ascii_case(want))
                .collect();
            match <[DeviceView; 1]>::try_from(matches) {
                Ok([one]) => {
                    ensure!(
                        one.tenant == tenant,
                        "the server listed device {} of tenant {:?} in tenant {tenant:?}: refused",
                        one.id,
                        one.tenant
                    );
                    Ok(one)
                }
                Err(v) if v.is_empty() => bail!("no device {want:?} in tenant {tenant}"),
                Err(_) => bail!("several devices are called {want:?}: name it by id"),
            }
        }
        None => {
            let device: DeviceView = session
                .get(&format!("/api/v1/devices/{}", path_segment(want)?))
                .await?;
            ensure!(
                device.id == want,
                "the server answered device {want} with device {}",
                device.id
            );
            Ok(device)
        }
    }
}

pub async fn run(args: ShellArgs) -> Result<()> {
    match args.command {
        Some(command) => run_command(command).await,
        None => {
            let device = args.device.context(
                "name a device (`bulwark shell DEVICE`) or a subcommand (`bulwark shell --help`)",
            )?;
            let code = open_shell(
                &device,
                args.tenant.as_deref(),
                args.grant.as_deref(),
                &args.key,
            )
            .await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}

async fn run_command(command: ShellCommand) -> Result<()> {
    match command {
        ShellCommand::Request {
            device,
            tenant,
            reason,
            duration,
            admin,
            key,
            json,
        } => {
            let secs = parse_duration(&duration)?;
            ensure!(
                secs <= MAX_GRANT_SECS,
                "a grant lasts at most {} hours",
                MAX_GRANT_SECS / 3600
            );
            ensure!(!reason.trim().is_empty(), "say why (--reason)");
            let session = Session::load()?;
            let trust = crate::commands::trust::fetch_trust(&session, &tenant).await?;
            let named = device;
            let device = find_device(&session, Some(&tenant), &named).await?;
            let device_key = crate::pins::parse_device_key(&device.key_fingerprint)
                .context("the server shows no valid key fingerprint for the device: refused")?;
            // A shell on a machine the server swapped in would collect what
            // the technician types: the key is held to this machine's pins.
            crate::pins::hold_devices(
                session.server(),
                &tenant,
                &[(
                    crate::pins::DevicePin {
                        device_id: device.id.clone(),
                        key: device_key,
                        hostname: device.hostname.clone(),
                    },
                    if named == device.id {
                        crate::pins::NamedBy::Other
                    } else {
                        crate::pins::NamedBy::Hostname
                    },
                )],
            )?;
            let store = KeyStore::open_default()?;
            let signing_key =
                store.load_signing_key(&key, &crate::commands::keys::passphrase(false)?)?;
            ensure_registered(&session, &key, &signing_key).await?;
            let now = unix_now();
            let mut grant_id = [0u8; 16];
            let mut nonce = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut grant_id);
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            // A minute of slack for clocks that disagree a little, inside
            // the longest window an agent takes.
            let not_before = now.saturating_sub(60);
            let grant = ShellGrant {
                tenant: trust.tenant_id.clone(),
                tenant_name: tenant.clone(),
                grant_id,
                device: JobTarget {
                    device_id: device.id.clone(),
                    hostname: device.hostname.clone(),
                    device_key: Some(device_key),
                },
                grantee: own_key_id(&signing_key),
                account: if admin {
                    ShellAccount::Root
                } else {
                    ShellAccount::Unprivileged
                },
                reason,
                not_before,
                expires_at: (now + secs).min(not_before + MAX_GRANT_SECS),
                nonce,
            };
            grant
                .validate(&Limits::default())
                .map_err(|e| anyhow::anyhow!("the grant is not valid: {e}"))?;
            let mut signed = Signed::new(&grant);
            signed.sign(&signing_key);
            let view: ShellGrantView = session
                .post(
                    &format!("/api/v1/tenants/{}/shell-grants", path_segment(&tenant)?),
                    &ShellGrantRequest {
                        envelope: B64.encode(signed.to_bytes()),
                    },
                )
                .await?;
            if json {
                return print_json(&view);
            }
            print!("{}", render_grant(&grant, &signed, trust.policy.as_ref()));
            println!("\nThe grant is {}.", view.state);
            if view.state == "pending" {
                eprintln!(
                    "Another operator approves it with `bulwark shell approve {}`; then `bulwark shell {} --grant {}`.",
                    view.id, device.id, view.id
                );
            }
            Ok(())
        }
        ShellCommand::Approve {
            grant: id,
            key,
            yes,
            otp,
            json,
        } => {
            let session = Session::load()?;
            let view: ShellGrantView = session.get(&grant_path(&id)?).await?;
            let (signed, grant) = statement_of(&view, &id)?;
            let trust = crate::commands::trust::fetch_trust(&session, &grant.tenant_name).await?;
            ensure!(
                trust.tenant_id == grant.tenant,
                "tenant {:?} is {} per its trust root, but the grant is for tenant id {}: refusing to approve",
                grant.tenant_name,
                trust.tenant_id,
                grant.tenant
            );
            // The approver holds the device to their own pins too: a second
            // signature never adds weight to a shell on a swapped machine,
            // and a grant naming no key could be opened on any of them.
            let device_key = grant.device.device_key.context(
                "the grant names no device key, so any machine could answer to it: refusing to approve",
            )?;
            crate::pins::hold_devices(
                session.server(),
                &grant.tenant_name,
                &[(
                    crate::pins::DevicePin {
                        device_id: grant.device.device_id.clone(),
                        key: device_key,
                        hostname: grant.device.hostname.clone(),
                    },
                    crate::pins::NamedBy::Other,
                )],
            )?;
            let store = KeyStore::open_default()?;
            let signing_key =
                store.load_signing_key(&key, &crate::commands::keys::passphrase(false)?)?;
            ensure!(
                own_key_id(&signing_key) != grant.grantee,
                "this key is the grantee's: another person approves"
            );
            print!("{}", render_grant(&grant, &signed, trust.policy.as_ref()));
            if !yes {
                let answer =
                    crate::output::prompt_line("\nSign and approve this shell grant? Type yes: ")?;
                ensure!(answer.trim() == "yes", "not approved");
            }
            ensure_registered(&session, &key, &signing_key).await?;
            let mut signed = signed;
            signed.sign(&signing_key);
            let entry = signed.signatures.last().context("signature added")?;
            let body = ShellApprovalRequest {
                key_id: hex::encode(entry.key_id.0),
                signature: B64.encode(entry.signature),
            };
            let reply: ShellGrantView = session
                .post_privileged(
                    &format!("{}/approvals", grant_path(&id)?),
                    &body,
                    otp.as_deref(),
                )
                .await?;
            if json {
                return print_json(&reply);
            }
            println!("\nSigned. The grant is {}.", reply.state);
            Ok(())
        }
        ShellCommand::Revoke { grant, reason } => {
            let session = Session::load()?;
            let reply: ShellGrantView = session
                .post(
                    &format!("{}/revoke", grant_path(&grant)?),
                    &ShellRevokeRequest { reason },
                )
                .await?;
            println!("The grant is {}.", reply.state);
            Ok(())
        }
        ShellCommand::Grants { tenant, json } => {
            let session = Session::load()?;
            let grants: Vec<ShellGrantView> = session
                .get(&format!(
                    "/api/v1/tenants/{}/shell-grants",
                    path_segment(&tenant)?
                ))
                .await?;
            if json {
                return print_json(&grants);
            }
            let rows: Vec<Vec<Cell>> = grants
                .iter()
                .map(|g| {
                    vec![
                        Cell::from(g.id.as_str()),
                        Cell::from(g.state.as_str()),
                        Cell::from(g.account.as_str()),
                        Cell::from(or_dash(g.hostname.as_deref())),
                        Cell::from(g.requested_by.as_str()),
                        Cell::from(g.expires_at.as_str()),
                        Cell::from(g.reason.as_str()),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &[
                        "ID", "STATE", "ACCOUNT", "DEVICE", "BY", "EXPIRES", "REASON"
                    ],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        ShellCommand::Sessions {
            device,
            tenant,
            json,
        } => {
            let session = Session::load()?;
            let sessions: Vec<ShellSessionView> = match (&device, &tenant) {
                (Some(device), tenant) => {
                    let device = find_device(&session, tenant.as_deref(), device).await?;
                    session
                        .get(&format!(
                            "/api/v1/devices/{}/shell-sessions",
                            path_segment(&device.id)?
                        ))
                        .await?
                }
                (None, Some(tenant)) => {
                    session
                        .get(&format!(
                            "/api/v1/tenants/{}/shell-sessions",
                            path_segment(tenant)?
                        ))
                        .await?
                }
                (None, None) => bail!("name a device, or a tenant with --tenant"),
            };
            if json {
                return print_json(&sessions);
            }
            let rows: Vec<Vec<Cell>> = sessions
                .iter()
                .map(|s| {
                    vec![
                        Cell::from(s.id.as_str()),
                        Cell::from(s.operator.as_str()),
                        Cell::from(s.opened_at.as_str()),
                        Cell::from(or_dash(s.closed_at.as_deref())),
                        Cell::from(or_dash(s.refusal.as_deref())),
                        Cell::from(or_dash(s.recording_len)),
                        Cell::from(or_dash(s.reason.as_deref())),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &[
                        "ID",
                        "BY",
                        "OPENED",
                        "CLOSED",
                        "REFUSAL",
                        "RECORDING",
                        "REASON"
                    ],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        ShellCommand::Recording {
            session: id,
            output,
        } => {
            let session = Session::load()?;
            let path = format!("/api/v1/shell-sessions/{}/recording", path_segment(&id)?);
            let response = session
                .request(reqwest::Method::GET, &path)
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            ensure!(
                response.status().is_success(),
                "GET {path}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            let bytes = response.bytes().await.context("reading the recording")?;
            // The digest the device reported, from the session's
            // `shell.session` entry proven in the tenant's signed log, not
            // from the server's rows (an owned server rewrites both the
            // bytes and the row).
            let (tenant, listed) = recorded_digest(&session, &id).await?;
            let entry = crate::commands::audit::newest_proven(&session, &tenant, |leaf| {
                leaf.action == "shell.session" && leaf.target == id
            })
            .await
            .with_context(|| format!("the log entry of session {id}"))?;
            let logged = logged_digest(&entry.leaf.detail)
                .context("the session's log entry names no recording")?;
            let actual = hex::encode(Sha256::digest(&bytes));
            ensure!(
                actual == logged,
                "the recording does not hash to the digest its device reported in the tenant's \
                 log (entry {} of {}): refused",
                entry.index,
                entry.head_size
            );
            if listed != logged {
                eprintln!(
                    "warning: the server lists digest {listed} for this session, but its log \
                     entry says {logged}: the server's rows were changed"
                );
            }
            match entry.witnessed {
                Some(n) => eprintln!(
                    "The recording matches entry {} of tenant {tenant}'s log, in the head of size \
                     {} that {n} of its policy's witnesses cosigned.",
                    entry.index, entry.head_size
                ),
                None => eprintln!(
                    "The recording matches entry {} of tenant {tenant}'s log (head of size {}). \
                     The tenant's policy lists no witnesses, so that head is the server's \
                     signature alone.",
                    entry.index, entry.head_size
                ),
            }
            match output {
                Some(file) => std::fs::write(&file, &bytes)
                    .with_context(|| format!("cannot write {}", file.display()))?,
                None => std::io::stdout().write_all(&bytes)?,
            }
            Ok(())
        }
    }
}

/// The digest in a `shell.session` entry's detail (`recording sha256
/// <64 hex> length …`, as `gateway::shells::session_detail` writes it).
fn logged_digest(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix("recording sha256 ")?;
    let digest = rest.get(..64)?;
    (digest
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && rest[64..].starts_with(" length "))
    .then_some(digest)
}

/// The tenant of session `id` and the recording digest the server lists
/// for it (a hint only: the log entry decides).
async fn recorded_digest(session: &Session, id: &str) -> Result<(String, String)> {
    let tenants: Vec<bulwark_api::tenants::TenantView> = session.get("/api/v1/tenants").await?;
    for tenant in tenants {
        let Ok(sessions) = session
            .get::<Vec<ShellSessionView>>(&format!(
                "/api/v1/tenants/{}/shell-sessions",
                path_segment(&tenant.name)?
            ))
            .await
        else {
            continue;
        };
        if let Some(s) = sessions.iter().find(|s| s.id == id) {
            let digest = s
                .recording_sha256
                .clone()
                .context("the session has no recording digest")?;
            return Ok((tenant.name, digest));
        }
    }
    bail!("no session {id} in your tenants")
}

/// Opens a shell and relays the terminal until it ends; the exit code.
async fn open_shell(
    device: &str,
    tenant: Option<&str>,
    grant: Option<&str>,
    key: &str,
) -> Result<i32> {
    let session = Session::load()?;
    let device = find_device(&session, tenant, device).await?;
    let store = KeyStore::open_default()?;
    let signing_key = store.load_signing_key(key, &crate::commands::keys::passphrase(false)?)?;
    let me = own_key_id(&signing_key);
    let view: ShellGrantView = match grant {
        Some(id) => session.get(&grant_path(id)?).await?,
        None => {
            let grants: Vec<ShellGrantView> = session
                .get(&format!(
                    "/api/v1/tenants/{}/shell-grants",
                    path_segment(&device.tenant)?
                ))
                .await?;
            grants
                .into_iter()
                .find(|g| {
                    g.device_id == device.id
                        && g.state == "approved"
                        && g.grantee_key == hex::encode(me.0)
                })
                .with_context(|| {
                    format!(
                        "no approved grant of yours for {}: `bulwark shell request {} --tenant {} --reason ...`",
                        device.hostname, device.id, device.tenant
                    )
                })?
        }
    };
    let (grant_signed, grant) = statement_of(&view, &view.id)?;
    ensure!(
        grant.grantee == me,
        "the grant names another grantee than key {key:?}"
    );
    ensure!(
        grant.device.device_id == device.id,
        "the grant is for device {}, not {}",
        grant.device.device_id,
        device.id
    );
    // The grant must verify under the policy this machine verified (the
    // pinned root's chain), with the agent's own function.
    let trust = crate::commands::trust::fetch_trust(&session, &grant.tenant_name).await?;
    ensure!(
        trust.tenant_id == grant.tenant,
        "the grant's tenant id is not the pinned tenant's: refused"
    );
    let policy = trust
        .policy
        .as_ref()
        .context("the tenant has no verified policy")?;
    let pinned_fingerprint = grant
        .device
        .device_key
        .context("the grant names no device key: refused (nothing would pin the device)")?;
    // The device key: the server's copy, used only if it hashes to the
    // fingerprint the grant's signers signed.
    let device_public_key: [u8; 32] = view
        .device_public_key
        .as_deref()
        .and_then(|k| hex::decode(k).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .context("the server shows no public key for the device")?;
    ensure!(
        <[u8; 32]>::from(Sha256::digest(device_public_key)) == pinned_fingerprint,
        "STOP: the server's key for device {} does not match the key the grant's signers signed: refused, nothing sent",
        device.id
    );
    let now = unix_now();
    let context = AgentContext {
        tenant: &grant.tenant,
        device_id: &grant.device.device_id,
        hostname: &grant.device.hostname,
        device_key: &pinned_fingerprint,
        policy,
        freeze: Default::default(),
    };
    verify_grant(
        &grant_signed,
        context,
        &RevokedGrants::default(),
        now.max(grant.not_before),
        &Limits::default(),
    )
    .map_err(|e| anyhow::anyhow!("the grant does not verify under the tenant's policy: {e}"))?;

    // The session-open: a fresh ephemeral key, signed by the grantee.
    let rng = ring::rand::SystemRandom::new();
    let ephemeral = Ephemeral::generate(&rng).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut session_id = [0u8; 16];
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut session_id);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let (cols, rows) = terminal::size();
    let mut open = Signed::new(&SessionOpen {
        grant_id: grant.grant_id,
        device_id: grant.device.device_id.clone(),
        session_id,
        client_ephemeral: ephemeral.public(),
        nonce,
        time: now,
        cols,
        rows,
    });
    open.sign(&signing_key);
    let mut socket = connect(&session, &format!("{}/connect", grant_path(&view.id)?)).await?;
    let first = encode_server_frame(
        PROTOCOL_VERSION,
        &ServerMessage::ShellOpen(ShellOpen {
            session_id,
            grant: grant_signed.to_bytes(),
            open: open.to_bytes(),
        }),
    )?;
    socket.send(Message::Binary(first.into())).await?;
    let limits = bulwark_protocol::Limits::default();
    let mut channel = loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Err(_) => bail!("the device did not answer within 30 seconds"),
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                match decode_agent_frame(&bytes, &limits)?.message {
                    AgentMessage::ShellOpened(opened) if opened.session_id == session_id => {
                        let answer = Signed::from_bytes(&opened.answer, &Limits::default())
                            .map_err(|e| {
                                anyhow::anyhow!("the device's answer is not valid: {e}")
                            })?;
                        let answered = verify_answer(
                            &answer,
                            &open,
                            &device_public_key,
                            &Limits::default(),
                        )
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "STOP: the answer is not the device's ({e}): refused, nothing typed"
                            )
                        })?;
                        break establish(
                            Side::Client,
                            ephemeral,
                            &answered.agent_ephemeral,
                            &open,
                            &answer,
                        )
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                    AgentMessage::ShellClosed(closed) => bail!(
                        "the device refused the shell ({}): {}",
                        closed.refusal.map_or("closed".into(), |c| c.to_string()),
                        closed.reason
                    ),
                    _ => bail!("the relay sent a frame of no session of this shell"),
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => bail!(
                "the server ended the session: {}",
                frame.map(|f| f.reason.to_string()).unwrap_or_default()
            ),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => bail!("the server closed the connection"),
        }
    };
    eprintln!(
        "Connected to {} as {} (grant {}). Leave with Ctrl-] or ~. at the start of a line.\r",
        Cell::from(grant.device.hostname.as_str()).text,
        grant.account.name(),
        view.id
    );
    let raw = terminal::RawMode::enter();
    let result = relay_terminal(&mut socket, &mut channel, session_id).await;
    drop(raw);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_digest_is_read_strictly() {
        let digest = "ab".repeat(32);
        assert_eq!(
            logged_digest(&format!(
                "recording sha256 {digest} length 495; ended: exit"
            )),
            Some(digest.as_str())
        );
        for bad in [
            format!("no recording; recording sha256 {digest} length 1"),
            format!("recording sha256 {} length 1", "AB".repeat(32)),
            format!("recording sha256 {}x length 1", &digest[..63]),
            format!("recording sha256 {digest}0 length 1"),
            "recording sha256 ".to_owned(),
        ] {
            assert_eq!(logged_digest(&bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").ok(), Some(1800));
        assert_eq!(parse_duration("2h").ok(), Some(7200));
        assert_eq!(parse_duration("1h30m").ok(), Some(5400));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("0m").is_err());
    }
}
