//! `bulwark schedule …` (RFD 0019): sign a schedule once on this machine,
//! list, show and revoke.
//!
//! What a person signs is rendered here from the statement itself, with its
//! next occurrences computed here by the agents' own code
//! (`bulwark_policy::schedule`) in the zone the statement names. The
//! server's JSON is used for lists and results only.

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::schedules::{RevokeScheduleRequest, ScheduleRequest, ScheduleView};
use bulwark_policy::cron::Cron;
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::schedule::{LocalWindow, ScheduleStatement};
use bulwark_policy::{Interpreter, JobAction, Limits, Signed};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::client::{Session, path_segment};
use crate::commands::keys::KeyStore;
use crate::commands::targets::{Targets, resolve_targets};
use crate::output::{Cell, print_json, render_table, terminal_text, unix_now, use_colour};

const DAY: u64 = 86_400;

#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Sign a schedule once (with every local key given: the policy's
    /// quorum for the class must be met now) and submit it. Each agent
    /// checks every run itself.
    #[command(group(clap::ArgGroup::new("action").required(true).args(["script", "command", "inventory_refresh"])))]
    Create {
        #[arg(long)]
        tenant: String,
        /// Five fields, in the tenant's zone: minute hour day-of-month month
        /// day-of-week, e.g. "0 3 * * 1" (Mondays 03:00).
        #[arg(long)]
        cron: String,
        /// The IANA zone the expression is read in, e.g. Europe/Berlin.
        #[arg(long)]
        tz: String,
        /// Runs only inside this daily local window, HH:MM-HH:MM.
        #[arg(long)]
        window: Option<String>,
        /// Device ids or hostnames, comma separated.
        #[arg(long = "device", value_delimiter = ',', required_unless_present_any = ["tags", "group"])]
        devices: Vec<String>,
        /// The tenant's devices carrying this tag (repeat: all must match),
        /// resolved here and signed as those devices.
        #[arg(long = "tag", value_name = "TAG", conflicts_with = "devices")]
        tags: Vec<String>,
        #[arg(long, conflicts_with = "devices")]
        group: Option<String>,
        #[arg(long, value_name = "FILE")]
        script: Option<std::path::PathBuf>,
        /// A one-line command to run with sh.
        #[arg(long, value_name = "TEXT")]
        command: Option<String>,
        #[arg(long)]
        inventory_refresh: bool,
        /// How many days the schedule lives (1 to 90): sign it again after.
        #[arg(long, default_value_t = 30)]
        days: u64,
        #[arg(long, default_value = "")]
        reason: String,
        /// Local signing keys to sign with (repeat for a quorum held here).
        #[arg(long = "key", default_value = "operator")]
        keys: Vec<String>,
        #[arg(long, default_value_t = 300)]
        timeout: u32,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// A tenant's schedules, newest first.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// One schedule: its next occurrences and the runs delivered.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering a schedule (the root holders' `revoked_schedules`
    /// stops it on agents whatever the server does).
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

fn schedule_path(id: &str) -> Result<String> {
    Ok(format!("/api/v1/schedules/{}", path_segment(id)?))
}

/// What is about to be signed, from the statement itself, with the next
/// occurrences computed here.
pub(crate) fn render(statement: &ScheduleStatement, now: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Schedule   {}", hex::encode(statement.schedule_id));
    let _ = writeln!(
        out,
        "Tenant     {} (id {})",
        statement.tenant_name, statement.tenant
    );
    let _ = writeln!(out, "Action     {}", statement.action.describe());
    let _ = writeln!(out, "When       {:?} in {}", statement.cron, statement.zone);
    if let Some(window) = statement.window {
        let _ = writeln!(out, "Window     {window} local time");
    }
    for t in &statement.targets {
        let _ = writeln!(
            out,
            "Target     {} ({})",
            terminal_text(&t.hostname),
            t.device_id
        );
    }
    let _ = writeln!(
        out,
        "Lives      {} days",
        (statement.not_after - statement.not_before) / DAY
    );
    let next = statement
        .timetable(&Limits::default(), |name| jiff::tz::db().get(name).ok())
        .map(|t| t.upcoming(now, 3))
        .unwrap_or_default();
    for at in next {
        let at = jiff::Timestamp::from_second(i64::try_from(at).unwrap_or_default())
            .map(|ts| ts.to_string())
            .unwrap_or_default();
        let _ = writeln!(out, "Next       {at}");
    }
    let _ = writeln!(out, "Reason     {}", terminal_text(&statement.reason));
    out
}

/// Signs each statement with every local key named (registered with the
/// server first): the one way a schedule is signed here.
pub(crate) async fn sign_schedules(
    session: &Session,
    statements: &[&ScheduleStatement],
    keys: &[String],
) -> Result<Vec<Signed>> {
    let mut signed: Vec<Signed> = statements.iter().map(|s| Signed::new(*s)).collect();
    let store = KeyStore::open_default()?;
    let passphrase = crate::commands::keys::passphrase(false)?;
    for key in keys {
        let signing_key = store.load_signing_key(key, &passphrase)?;
        crate::commands::jobs::ensure_registered(session, key, &signing_key).await?;
        for s in &mut signed {
            s.sign(&signing_key);
        }
    }
    Ok(signed)
}

pub(crate) fn print_schedule(view: &ScheduleView) {
    println!("Schedule   {}", view.id);
    println!("Action     {}", terminal_text(&view.action));
    println!("When       {:?} in {}", view.cron, view.zone);
    if let Some(window) = &view.window {
        println!("Window     {window}");
    }
    for t in &view.targets {
        println!(
            "Target     {} ({})",
            terminal_text(&t.hostname),
            t.device_id
        );
    }
    println!("Lives      {} to {}", view.not_before, view.not_after);
    println!(
        "By         {} at {}",
        terminal_text(&view.created_by),
        view.created_at
    );
    if let Some(revoked) = &view.revoked_at {
        println!("Revoked    {revoked}");
    }
    for next in &view.next_occurrences {
        println!("Next       {next} (as the server computes it)");
    }
    for run in &view.runs {
        println!(
            "Run        {} job {} by {}",
            run.occurrence, run.job_id, run.claimed_by
        );
        for r in &run.results {
            let what = match (&r.refusal_code, r.exit_code) {
                (Some(code), _) => format!(
                    "refused {code}: {}",
                    terminal_text(r.refusal_reason.as_deref().unwrap_or(""))
                ),
                (None, Some(exit)) => format!("exit {exit}"),
                (None, None) => String::new(),
            };
            println!(
                "  Result   {} {} {what}",
                terminal_text(&r.hostname),
                r.state
            );
        }
    }
}

pub async fn run(cmd: ScheduleCommand) -> Result<()> {
    match cmd {
        ScheduleCommand::Create {
            tenant,
            cron,
            tz,
            window,
            devices,
            tags,
            group,
            script,
            command,
            inventory_refresh,
            days,
            reason,
            keys,
            timeout,
            yes,
            json,
        } => {
            Cron::parse(&cron).map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(
                jiff::tz::db().get(&tz).is_ok(),
                "unknown time zone {tz:?} (an IANA name such as Europe/Berlin)"
            );
            let window = window
                .as_deref()
                .map(LocalWindow::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!((1..=90).contains(&days), "--days is 1 to 90");
            let body = match (&script, &command) {
                (Some(path), _) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    String::from_utf8(bytes).context("the script is not UTF-8 text")?
                }
                (None, Some(command)) => format!("{}\n", command.trim_end()),
                (None, None) => String::new(),
            };
            let action = if inventory_refresh {
                JobAction::InventoryRefresh
            } else {
                JobAction::RunScript {
                    interpreter: Interpreter::from_shebang(body.as_bytes()),
                    script_sha256: ScriptHash(Sha256::digest(body.as_bytes()).into()),
                }
            };
            let session = Session::load()?;
            let trust = crate::commands::trust::fetch_trust(&session, &tenant).await?;
            let class = match &trust.policy {
                Some(policy) => action.class(policy),
                None => {
                    anyhow::bail!("the tenant has no verified policy: run `bulwark tenant init`")
                }
            };
            let wanted = if !tags.is_empty() || group.is_some() {
                Targets::Labelled {
                    tags: &tags,
                    group: group.as_deref(),
                }
            } else {
                Targets::Named(&devices)
            };
            let targets = resolve_targets(&session, &tenant, wanted).await?;
            let now = unix_now();
            let mut schedule_id = [0u8; 16];
            let mut nonce = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut schedule_id);
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            // From the start of this minute, so a schedule "every minute"
            // made now has its first run within a minute.
            let not_before = now - now % 60;
            let statement = ScheduleStatement {
                tenant: trust.tenant_id.clone(),
                tenant_name: tenant.clone(),
                schedule_id,
                targets,
                class,
                action,
                cron,
                zone: tz,
                window,
                not_before,
                not_after: not_before + days * DAY,
                nonce,
                reason,
                timeout_secs: timeout,
            };
            statement
                .validate(&Limits::default())
                .map_err(|e| anyhow::anyhow!("the schedule is not valid: {e}"))?;
            if !yes && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                println!("{}", render(&statement, now));
                if !body.is_empty() {
                    println!(
                        "\n--- script ---\n{}\n--- end of script ---",
                        crate::commands::scripts::visible(&body)
                    );
                }
                let answer = crate::output::prompt_line("\nSign this schedule once? Type yes: ")?;
                ensure!(answer.trim() == "yes", "not signed");
            }
            let signed = sign_schedules(&session, &[&statement], &keys)
                .await?
                .remove(0);
            let path = format!("/api/v1/tenants/{}/schedules", path_segment(&tenant)?);
            let request = ScheduleRequest {
                envelope: B64.encode(signed.to_bytes()),
                script: body,
            };
            let view: ScheduleView = session.post(&path, &request).await?;
            if json {
                return print_json(&view);
            }
            print_schedule(&view);
            Ok(())
        }
        ScheduleCommand::List { tenant, json } => {
            let session = Session::load()?;
            let views: Vec<ScheduleView> = session
                .get(&format!(
                    "/api/v1/tenants/{}/schedules",
                    path_segment(&tenant)?
                ))
                .await?;
            if json {
                return print_json(&views);
            }
            let rows: Vec<Vec<Cell>> = views
                .iter()
                .map(|s| {
                    vec![
                        Cell::from(s.id.as_str()),
                        Cell::from(s.cron.as_str()),
                        Cell::from(s.zone.as_str()),
                        Cell::from(s.class.as_str()),
                        Cell::from(s.next_occurrences.first().map_or("-", String::as_str)),
                        Cell::from(s.revoked_at.as_deref().unwrap_or("-")),
                        Cell::from(s.reason.as_str()),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["ID", "CRON", "ZONE", "CLASS", "NEXT", "REVOKED", "REASON"],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        ScheduleCommand::Show { id, json } => {
            let session = Session::load()?;
            let view: ScheduleView = session.get(&schedule_path(&id)?).await?;
            if json {
                return print_json(&view);
            }
            print_schedule(&view);
            Ok(())
        }
        ScheduleCommand::Revoke { id, reason, otp } => {
            let session = Session::load()?;
            let view: ScheduleView = session
                .post_privileged(
                    &format!("{}/revoke", schedule_path(&id)?),
                    &RevokeScheduleRequest { reason },
                    otp.as_deref(),
                )
                .await?;
            println!(
                "Schedule {} revoked at {}: the server delivers no more runs.",
                view.id,
                view.revoked_at.as_deref().unwrap_or("-")
            );
            Ok(())
        }
    }
}
