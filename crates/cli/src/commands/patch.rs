//! `bulwark patch policy …` (RFD 0021): a patch policy is two
//! install-patches schedules signed once here, the canary ring's and ring
//! 2's, the way `bulwark schedule create` signs one
//! (`schedules::sign_schedules`). The ring plan printed before signing is
//! rendered here from the statements themselves; ring 2's earliest run
//! (the canary's start plus the soak) is signed into its schedule.

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::patch_policies::{PatchPolicyRequest, PatchPolicyView, RevokePatchPolicyRequest};
use bulwark_api::schedules::ScheduleRequest;
use bulwark_policy::cron::Cron;
use bulwark_policy::schedule::{LocalWindow, ScheduleStatement};
use bulwark_policy::{JobAction, JobTarget, Limits};
use rand::RngCore;

use crate::client::{Session, path_segment};
use crate::commands::schedules::{print_schedule, render, sign_schedules};
use crate::commands::targets::{Targets, resolve_targets};
use crate::output::{Cell, print_json, render_table, terminal_text, unix_now, use_colour};

const DAY: u64 = 86_400;

#[derive(Debug, clap::Subcommand)]
pub enum PatchCommand {
    /// Patch policies: security updates by signed schedules, a canary ring first.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Sign a patch policy once (every local key given: the install-patches
    /// quorum must be met now): every pending security update, installed
    /// inside the window, on the canary ring first and on ring 2 after the
    /// soak if the canary stayed healthy.
    Create {
        #[arg(long)]
        tenant: String,
        /// A name for people, e.g. "nightly".
        #[arg(long)]
        name: String,
        /// The canary ring: device ids or host names, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        canary: Vec<String>,
        /// Ring 2: device ids or host names, comma separated.
        #[arg(
            long = "device",
            value_delimiter = ',',
            required_unless_present = "group"
        )]
        devices: Vec<String>,
        /// Ring 2: the tenant's devices in this group but not in the canary,
        /// resolved here and signed as those devices.
        #[arg(long, conflicts_with = "devices")]
        group: Option<String>,
        /// When, in the tenant's zone: minute hour day-of-month month
        /// day-of-week, e.g. "0 2 * * *".
        #[arg(long)]
        cron: String,
        /// The tenant's IANA zone, e.g. Europe/Berlin.
        #[arg(long)]
        tz: String,
        /// The maintenance window, local HH:MM-HH:MM.
        #[arg(long)]
        window: Option<String>,
        /// How long the canary must stay healthy before ring 2 runs:
        /// seconds, or with s, m, h or d.
        #[arg(long, default_value = "1d")]
        soak: String,
        /// How many days the policy lives (1 to 90): sign it again after.
        #[arg(long, default_value_t = 30)]
        days: u64,
        #[arg(long = "key", default_value = "operator")]
        keys: Vec<String>,
        #[arg(long, default_value_t = 3600)]
        timeout: u32,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// A tenant's patch policies and their rings' states.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// One policy: its rings, their states and runs.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering both rings (against a server that keeps delivering,
    /// the root holders list both schedules in `revoked_schedules`).
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

/// "90", "90s", "15m", "2h", "1d" as seconds.
fn parse_soak(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--soak {text:?}: a number with s, m, h or d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => DAY,
        _ => bail!("--soak {text:?}: a number with s, m, h or d"),
    };
    n.checked_mul(unit).context("--soak is too long")
}

/// The ring plan, from the statements about to be signed.
fn render_plan(
    canary: &ScheduleStatement,
    rest: &ScheduleStatement,
    soak: u64,
    now: u64,
) -> String {
    format!(
        "Ring plan: the canary first; ring 2 not before {} (signed), and only \
         after the canary's run soaked {soak} s healthy.\n\n\
         --- canary ---\n{}\n--- ring 2 ---\n{}",
        jiff::Timestamp::from_second(i64::try_from(rest.not_before).unwrap_or_default())
            .map(|t| t.to_string())
            .unwrap_or_default(),
        render(canary, now),
        render(rest, now.max(rest.not_before))
    )
}

fn print_policy(view: &PatchPolicyView) {
    println!("Policy     {} ({})", view.id, terminal_text(&view.name));
    println!("Installs   {}", terminal_text(&view.installs));
    println!(
        "Soak       {} s; ring 2 not before {}",
        view.soak_secs, view.ring_two_not_before
    );
    if let Some(revoked) = &view.revoked_at {
        println!("Revoked    {revoked}");
    }
    for ring in &view.rings {
        println!(
            "\nRing       {}: {} {}",
            ring.ring,
            ring.state,
            terminal_text(&ring.detail)
        );
        print_schedule(&ring.schedule);
    }
}

fn ring_devices(targets: &[JobTarget]) -> String {
    targets
        .iter()
        .map(|t| t.hostname.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(cmd: PatchCommand) -> Result<()> {
    let PatchCommand::Policy { command } = cmd;
    match command {
        PolicyCommand::Create {
            tenant,
            name,
            canary,
            devices,
            group,
            cron,
            tz,
            window,
            soak,
            days,
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
            let soak = parse_soak(&soak)?;
            ensure!(
                soak < days * DAY,
                "the soak is longer than the policy lives"
            );
            let action = JobAction::InstallPatches {
                packages: Vec::new(),
            };
            let session = Session::load()?;
            let trust = crate::commands::trust::fetch_trust(&session, &tenant).await?;
            let Some(policy) = &trust.policy else {
                bail!("the tenant has no verified policy: run `bulwark tenant init`")
            };
            let class = action.class(policy);
            let canary_targets =
                resolve_targets(&session, &tenant, Targets::Named(&canary)).await?;
            let rest_wanted = match &group {
                Some(group) => Targets::Labelled {
                    tags: &[],
                    group: Some(group.as_str()),
                },
                None => Targets::Named(&devices),
            };
            let rest_targets: Vec<JobTarget> = resolve_targets(&session, &tenant, rest_wanted)
                .await?
                .into_iter()
                .filter(|t| !canary_targets.iter().any(|c| c.device_id == t.device_id))
                .collect();
            ensure!(
                !rest_targets.is_empty(),
                "ring 2 has no device that is not in the canary"
            );
            let now = unix_now();
            // From the start of this minute, as `schedule create`.
            let not_before = now - now % 60;
            let statement = |targets: Vec<JobTarget>, not_before: u64, ring: &str| {
                let mut schedule_id = [0u8; 16];
                let mut nonce = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut schedule_id);
                rand::rngs::OsRng.fill_bytes(&mut nonce);
                ScheduleStatement {
                    tenant: trust.tenant_id.clone(),
                    tenant_name: tenant.clone(),
                    schedule_id,
                    targets,
                    class,
                    action: action.clone(),
                    cron: cron.clone(),
                    zone: tz.clone(),
                    window,
                    not_before,
                    not_after: not_before + days * DAY,
                    nonce,
                    reason: format!("patch policy {name}: {ring}"),
                    timeout_secs: timeout,
                }
            };
            let canary_statement = statement(canary_targets, not_before, "canary");
            let rest_statement = statement(rest_targets, not_before + soak, "ring 2");
            for s in [&canary_statement, &rest_statement] {
                s.validate(&Limits::default())
                    .map_err(|e| anyhow::anyhow!("the schedule is not valid: {e}"))?;
            }
            if !yes && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                println!(
                    "{}",
                    render_plan(&canary_statement, &rest_statement, soak, now)
                );
                let answer = crate::output::prompt_line(
                    "\nSign both rings of this policy once? Type yes: ",
                )?;
                ensure!(answer.trim() == "yes", "not signed");
            } else if !json {
                println!(
                    "Signing: canary {} now; ring 2 {} after {soak} s.",
                    terminal_text(&ring_devices(&canary_statement.targets)),
                    terminal_text(&ring_devices(&rest_statement.targets))
                );
            }
            let mut signed =
                sign_schedules(&session, &[&canary_statement, &rest_statement], &keys).await?;
            let rest = signed.pop().context("two signed schedules")?;
            let canary = signed.pop().context("two signed schedules")?;
            let request = PatchPolicyRequest {
                name,
                canary: ScheduleRequest {
                    envelope: B64.encode(canary.to_bytes()),
                    script: String::new(),
                },
                rest: ScheduleRequest {
                    envelope: B64.encode(rest.to_bytes()),
                    script: String::new(),
                },
                soak_secs: soak,
            };
            let path = format!("/api/v1/tenants/{}/patch-policies", path_segment(&tenant)?);
            let view: PatchPolicyView = session.post(&path, &request).await?;
            if json {
                return print_json(&view);
            }
            print_policy(&view);
            Ok(())
        }
        PolicyCommand::List { tenant, json } => {
            let session = Session::load()?;
            let views: Vec<PatchPolicyView> = session
                .get(&format!(
                    "/api/v1/tenants/{}/patch-policies",
                    path_segment(&tenant)?
                ))
                .await?;
            if json {
                return print_json(&views);
            }
            let ring = |v: &PatchPolicyView, i: usize| {
                v.rings
                    .get(i)
                    .map(|r| format!("{} ({})", r.state, r.schedule.targets.len()))
                    .unwrap_or_default()
            };
            let rows: Vec<Vec<Cell>> = views
                .iter()
                .map(|v| {
                    vec![
                        Cell::from(v.id.as_str()),
                        Cell::from(v.name.as_str()),
                        Cell::from(ring(v, 0)),
                        Cell::from(ring(v, 1)),
                        Cell::from(v.soak_secs.to_string()),
                        Cell::from(v.revoked_at.as_deref().unwrap_or("-")),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["ID", "NAME", "CANARY", "RING 2", "SOAK S", "REVOKED"],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        PolicyCommand::Show { id, json } => {
            let session = Session::load()?;
            let view: PatchPolicyView = session
                .get(&format!("/api/v1/patch-policies/{}", path_segment(&id)?))
                .await?;
            if json {
                return print_json(&view);
            }
            print_policy(&view);
            Ok(())
        }
        PolicyCommand::Revoke { id, reason, otp } => {
            let session = Session::load()?;
            let view: PatchPolicyView = session
                .post_privileged(
                    &format!("/api/v1/patch-policies/{}/revoke", path_segment(&id)?),
                    &RevokePatchPolicyRequest { reason },
                    otp.as_deref(),
                )
                .await?;
            println!(
                "Patch policy {} revoked at {}: the server delivers neither ring any more.",
                view.id,
                view.revoked_at.as_deref().unwrap_or("-")
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_reads_as_people_write_it() {
        assert_eq!(parse_soak("90").ok(), Some(90));
        assert_eq!(parse_soak("15m").ok(), Some(900));
        assert_eq!(parse_soak("2h").ok(), Some(7200));
        assert_eq!(parse_soak("1d").ok(), Some(DAY));
        assert!(parse_soak("1w").is_err());
        assert!(parse_soak("").is_err());
        assert!(parse_soak("-1s").is_err());
    }
}
