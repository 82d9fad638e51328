//! `bulwark alert …`: the alerts of the tenants you may see, handling them,
//! and where a tenant's alerts are sent (RFD 0007).
//!
//! An alert is the server speaking: it says where to look (a job, a
//! device, a log entry), and the commands that verify (`job show`, `audit
//! verify`) say what is true.

use anyhow::Result;
use bulwark_api::alerts::{
    AlertView, ChannelHoursView, ChannelKindView, ChannelRequest, ChannelView, SeverityView,
};

/// ", in business hours" and the like, for a channel's `hours`.
fn hours_text(hours: &str) -> &'static str {
    match hours {
        "business" => ", in business hours",
        "after" => ", outside business hours",
        _ => "",
    }
}

/// PagerDuty's Events API v2, where its integrations take events.
const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

use crate::client::*;
use crate::output::*;

#[derive(Debug, clap::Subcommand)]
pub enum AlertCommand {
    /// Alerts, newest first (unresolved ones unless --state says otherwise).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// open, acknowledged, resolved, unresolved (the default) or all.
        #[arg(long, default_value = "unresolved")]
        state: String,
        #[arg(long)]
        json: bool,
    },
    /// One alert: what raised it, and where it was sent.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an open alert: you are on it.
    Ack { id: String },
    /// Resolve an alert: its source raises a new one from now on.
    Resolve { id: String },
    /// Where a tenant's alerts are sent.
    Channels {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Send a tenant's alerts to an e-mail address, a webhook or PagerDuty.
    #[command(group(clap::ArgGroup::new("to").required(true).args(["email", "webhook", "pagerduty"])))]
    AddChannel {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// An https:// URL (Slack and Teams incoming webhooks read its `text`).
        #[arg(long, value_name = "URL")]
        webhook: Option<String>,
        /// A PagerDuty Events API v2 integration's routing key: alerts open
        /// incidents there, and acknowledging or resolving here follows.
        #[arg(long, value_name = "ROUTING_KEY")]
        pagerduty: Option<String>,
        /// Where PagerDuty events go: https://events.pagerduty.com/v2/enqueue
        /// unless given (the EU service: https://events.eu.pagerduty.com/v2/enqueue).
        #[arg(long, value_name = "URL", requires = "pagerduty")]
        events_url: Option<String>,
        /// info, warning (the default) or critical.
        #[arg(long, default_value = "warning")]
        min_severity: String,
        /// Tell this channel only of alerts that open (or escalate) inside
        /// the tenant's business hours (`business`) or outside them
        /// (`after`), by its SLA calendar (`bulwark sla set`). Default: always.
        #[arg(long, value_name = "business|after")]
        hours: Option<String>,
        /// An escalation: tell this channel only of alerts nobody
        /// acknowledged this long after they opened (90s, 15m, 2h; at most 7d).
        #[arg(long, value_name = "DURATION", value_parser = parse_delay)]
        escalate_after: Option<u64>,
        /// The current TOTP code, if the server asks for a fresh MFA check.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Stop sending alerts to a channel.
    RemoveChannel {
        id: String,
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
}

pub async fn run(command: AlertCommand) -> Result<()> {
    let session = Session::load()?;
    match command {
        AlertCommand::List {
            tenant,
            state,
            json,
        } => {
            let mut query = vec![("limit", "1000".to_owned())];
            if state != "all" {
                query.push(("state", state));
            }
            if let Some(tenant) = tenant {
                query.push(("tenant", tenant));
            }
            let alerts: Vec<AlertView> = session.get_query("/api/v1/alerts", &query).await?;
            if json {
                return print_json(&alerts);
            }
            print_alerts(&alerts);
            Ok(())
        }
        AlertCommand::Show { id, json } => {
            let alert: AlertView = session
                .get(&format!("/api/v1/alerts/{}", path_segment(&id)?))
                .await?;
            if json {
                return print_json(&alert);
            }
            print!("{}", alert_text(&alert));
            Ok(())
        }
        AlertCommand::Ack { id } => handle(&session, &id, "acknowledge").await,
        AlertCommand::Resolve { id } => handle(&session, &id, "resolve").await,
        AlertCommand::Channels { tenant, json } => {
            let channels: Vec<ChannelView> = session
                .get(&format!(
                    "/api/v1/tenants/{}/alert-channels",
                    path_segment(&tenant)?
                ))
                .await?;
            if json {
                return print_json(&channels);
            }
            if channels.is_empty() {
                println!(
                    "Tenant {tenant}'s alerts go nowhere but the console: add an address with \
                     `bulwark alert add-channel --tenant {tenant} --email ADDRESS`."
                );
                return Ok(());
            }
            let rows: Vec<Vec<Cell>> = channels
                .iter()
                .map(|c| {
                    vec![
                        c.id.as_str().into(),
                        c.kind.as_str().into(),
                        c.target.as_str().into(),
                        (match c.escalate_after_secs {
                            None => format!("{} and up", c.min_severity),
                            Some(secs) => format!(
                                "{} and up, unacknowledged after {}",
                                c.min_severity,
                                delay_text(secs)
                            ),
                        } + hours_text(&c.hours))
                        .into(),
                        c.created_by.as_str().into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["ID", "KIND", "TARGET", "SEVERITY", "ADDED BY"],
                    &rows,
                    use_colour()
                )
            );
            Ok(())
        }
        AlertCommand::AddChannel {
            tenant,
            email,
            webhook,
            pagerduty,
            events_url,
            min_severity,
            hours,
            escalate_after,
            otp,
        } => {
            let hours = match hours.as_deref() {
                None | Some("always") => None,
                Some("business") => Some(ChannelHoursView::Business),
                Some("after") => Some(ChannelHoursView::After),
                Some(other) => anyhow::bail!("--hours {other:?}: business or after"),
            };
            let (kind, target, routing_key) = match (email, webhook, pagerduty) {
                (Some(address), _, _) => (ChannelKindView::Email, address, None),
                (None, Some(url), _) => (ChannelKindView::Webhook, url, None),
                (None, None, Some(key)) => (
                    ChannelKindView::Pagerduty,
                    events_url.unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_owned()),
                    Some(key),
                ),
                (None, None, None) => anyhow::bail!("give --email, --webhook or --pagerduty"),
            };
            let min_severity = match min_severity.as_str() {
                "info" => SeverityView::Info,
                "warning" => SeverityView::Warning,
                "critical" => SeverityView::Critical,
                other => anyhow::bail!("--min-severity {other:?}: info, warning or critical"),
            };
            let request = ChannelRequest {
                kind,
                target,
                routing_key,
                hours,
                min_severity: Some(min_severity),
                escalate_after_secs: escalate_after,
            };
            let channel: ChannelView = session
                .post_privileged(
                    &format!("/api/v1/tenants/{}/alert-channels", path_segment(&tenant)?),
                    &request,
                    otp.as_deref(),
                )
                .await?;
            match channel.escalate_after_secs {
                None => println!(
                    "Tenant {tenant}'s {} alerts and up{} now go to {} {} (channel {}).",
                    channel.min_severity,
                    hours_text(&channel.hours),
                    channel.kind,
                    channel.target,
                    channel.id
                ),
                Some(secs) => println!(
                    "Tenant {tenant}'s {} alerts and up nobody acknowledges within {}{} now go to {} {} (channel {}).",
                    channel.min_severity,
                    delay_text(secs),
                    hours_text(&channel.hours),
                    channel.kind,
                    channel.target,
                    channel.id
                ),
            }
            Ok(())
        }
        AlertCommand::RemoveChannel { id, otp } => {
            session
                .delete_privileged(
                    &format!("/api/v1/alert-channels/{}", path_segment(&id)?),
                    otp.as_deref(),
                )
                .await?;
            println!("Channel {id} removed: nothing more is sent to it.");
            Ok(())
        }
    }
}

async fn handle(session: &Session, id: &str, verb: &str) -> Result<()> {
    let alert: AlertView = session
        .post(
            &format!("/api/v1/alerts/{}/{verb}", path_segment(id)?),
            &serde_json::json!({}),
        )
        .await?;
    println!("Alert {} is {}: {}", alert.id, alert.state, alert.summary);
    Ok(())
}

/// "90s", "15m", "2h", "1d" as seconds, 1 s to 7 days.
fn parse_delay(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a number and a unit, like 90s, 15m, 2h or 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" | "" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    if (1..=604_800).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("{text:?}: from 1s to 7d"))
    }
}

fn delay_text(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn severity_cell(severity: &str) -> Cell {
    Cell {
        text: severity.to_owned(),
        colour: match severity {
            "critical" => Some(RED),
            _ => None,
        },
    }
}

fn print_alerts(alerts: &[AlertView]) {
    if alerts.is_empty() {
        println!("No alerts.");
        return;
    }
    let rows: Vec<Vec<Cell>> = alerts
        .iter()
        .map(|a| {
            vec![
                a.id.as_str().into(),
                severity_cell(&a.severity),
                if a.silenced.is_some() {
                    format!("{} (silenced)", a.state).into()
                } else {
                    a.state.as_str().into()
                },
                or_dash(a.tenant.as_deref()).into(),
                a.opened_at.as_str().into(),
                a.occurrences.to_string().into(),
                a.summary.as_str().into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &[
                "ID", "SEVERITY", "STATE", "TENANT", "OPENED", "TIMES", "SUMMARY"
            ],
            &rows,
            use_colour()
        )
    );
}

fn alert_text(a: &AlertView) -> String {
    let mut out = format!("{}\n\n", a.summary);
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<14}{v}\n"));
    line("Alert", &a.id);
    line("Tenant", a.tenant.as_deref().unwrap_or("(MSP-wide)"));
    line("Severity", &a.severity);
    line("State", &a.state);
    if let Some(why) = &a.silenced {
        line("Silenced", &format!("{why}: sent to no channel"));
    }
    line("Kind", &a.kind);
    line("Opened", &a.opened_at);
    line(
        "Last seen",
        &format!("{} ({})", a.last_seen_at, counted(a.occurrences, "time")),
    );
    if let Some(device) = &a.device_id {
        line("Device", device);
    }
    if let (Some(by), Some(at)) = (&a.acknowledged_by, &a.acknowledged_at) {
        line("Acknowledged", &format!("{at} by {by}"));
    }
    if let (Some(by), Some(at)) = (&a.resolved_by, &a.resolved_at) {
        line("Resolved", &format!("{at} by {by}"));
    }
    if let (Some(log), Some(idx)) = (&a.log_id, a.log_idx) {
        line("Log entry", &format!("{log} #{idx}"));
    }
    for n in &a.notifications {
        let error = n
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        line(
            "Sent to",
            &format!(
                "{} {}: {} after {}{error}",
                n.channel,
                n.target,
                n.state,
                counted(n.attempts, "attempt")
            ),
        );
    }
    out.push('\n');
    out.push_str(&a.detail);
    out.push('\n');
    out
}

/// "1 attempt", "3 attempts".
fn counted(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_take_a_unit_and_stay_within_a_week() {
        assert_eq!(parse_delay("90s"), Ok(90));
        assert_eq!(parse_delay("15m"), Ok(900));
        assert_eq!(parse_delay("15"), Ok(900));
        assert_eq!(parse_delay("2h"), Ok(7200));
        assert_eq!(parse_delay("7d"), Ok(604_800));
        for bad in ["0s", "8d", "m", "1w", "-1s", "1.5h", ""] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
        assert_eq!(delay_text(900), "15 min");
        assert_eq!(delay_text(7200), "2 h");
        assert_eq!(delay_text(8), "8 s");
    }
}
