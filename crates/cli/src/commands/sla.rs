//! `bulwark sla show|set|report`: a tenant's SLA targets in business time
//! of its calendar, and how its alerts did against them (RFD 0008).
//!
//! The report is computed by the server from its alert records; it is a
//! service measure, not a trust-path claim.

use anyhow::{Context, Result, bail};
use bulwark_api::alerts::SeverityView;
use bulwark_api::sla::{
    BusinessHoursView, SlaReport, SlaSettingsView, SlaTallyView, SlaTargetView, SlaView,
    UptimeTargetView, WeekdayView,
};

use crate::client::*;
use crate::output::*;

#[derive(Debug, clap::Subcommand)]
pub enum SlaCommand {
    /// A tenant's SLA targets and business calendar.
    Show {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's SLA (owners): what is not given stays as it is.
    ///
    /// Example: bulwark sla set acme --timezone Europe/Berlin --hours mon-fri 09:00-17:00
    /// --holiday 2026-12-25 --ack critical=30m --resolve critical=4h --patch-critical-days 14
    Set {
        tenant: String,
        /// An IANA time zone name: Europe/Berlin, America/New_York, UTC.
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
        /// Business hours, local time: `--hours mon-fri 09:00-17:00`; days as
        /// a range, a comma list or `all`. Repeat for other days; given at
        /// all, they replace the whole week.
        #[arg(long, num_args = 2, value_names = ["DAYS", "HH:MM-HH:MM"], action = clap::ArgAction::Append)]
        hours: Vec<String>,
        /// A local date with no business hours (YYYY-MM-DD); repeatable, added
        /// to those already set.
        #[arg(long, value_name = "DATE")]
        holiday: Vec<String>,
        /// Remove every holiday set before (those given with --holiday stay).
        #[arg(long)]
        clear_holidays: bool,
        /// Time to acknowledge, in business time: `critical=30m`, `warning=2h`,
        /// `info=none` to remove. Repeatable.
        #[arg(long, value_name = "SEVERITY=TIME")]
        ack: Vec<String>,
        /// Time to resolve, in business time: `critical=4h`. Repeatable.
        #[arg(long, value_name = "SEVERITY=TIME")]
        resolve: Vec<String>,
        /// Security updates installed within this many days of first being
        /// pending (measured as patch compliance); `none` removes it.
        #[arg(long, value_name = "DAYS")]
        patch_critical_days: Option<String>,
        /// Uptime target of a device group, in percent: `Servers=99.9`;
        /// `Servers=none` removes it. Repeatable.
        #[arg(long, value_name = "GROUP=PERCENT")]
        uptime: Vec<String>,
        /// The current TOTP code, if the server asks for a fresh MFA check.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Attainment over the last days: per severity, per week, and every breach.
    Report {
        tenant: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: SlaCommand) -> Result<()> {
    let session = Session::load()?;
    match command {
        SlaCommand::Show { tenant, json } => {
            let sla: SlaView = session.get(&sla_path(&tenant)?).await?;
            if json {
                return print_json(&sla);
            }
            print!("{}", sla_text(&sla));
            Ok(())
        }
        SlaCommand::Set {
            tenant,
            timezone,
            hours,
            holiday,
            clear_holidays,
            ack,
            resolve,
            patch_critical_days,
            uptime,
            otp,
        } => {
            let current: SlaView = session.get(&sla_path(&tenant)?).await?;
            let mut settings = current.settings;
            if let Some(zone) = timezone {
                settings.time_zone = zone;
            }
            if !hours.is_empty() {
                settings.business_hours = parse_hours(&hours)?;
            }
            if clear_holidays {
                settings.holidays.clear();
            }
            for day in holiday {
                if !settings.holidays.contains(&day) {
                    settings.holidays.push(day);
                }
            }
            for (spec, acknowledge) in ack
                .iter()
                .map(|s| (s, true))
                .chain(resolve.iter().map(|s| (s, false)))
            {
                set_target(&mut settings.targets, spec, acknowledge)?;
            }
            for spec in &uptime {
                set_uptime(&mut settings.uptime_targets, spec)?;
            }
            if let Some(days) = patch_critical_days {
                settings.patch_critical_days = match days.as_str() {
                    "none" => None,
                    n => Some(n.parse().with_context(|| {
                        format!("--patch-critical-days {n:?}: a number of days or none")
                    })?),
                };
            }
            let sla: SlaView = session
                .put_privileged(&sla_path(&tenant)?, &settings, otp.as_deref())
                .await?;
            println!("Tenant {tenant}'s SLA is set (recorded as sla.changed in its log):\n");
            print!("{}", sla_text(&sla));
            Ok(())
        }
        SlaCommand::Report { tenant, days, json } => {
            let report: SlaReport = session
                .get_query(
                    &format!("{}/report", sla_path(&tenant)?),
                    &[("days", days.to_string())],
                )
                .await?;
            if json {
                return print_json(&report);
            }
            print!("{}", report_text(&report, use_colour()));
            Ok(())
        }
    }
}

fn sla_path(tenant: &str) -> Result<String> {
    Ok(format!("/api/v1/tenants/{}/sla", path_segment(tenant)?))
}

/// `mon-fri`, `sat,sun`, `mon,wed-fri`, `all`: weekdays, Monday first.
fn parse_days(text: &str) -> Result<Vec<WeekdayView>> {
    let index = |name: &str| {
        WeekdayView::ALL
            .iter()
            .position(|d| d.as_str() == name)
            .with_context(|| {
                format!("{name:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")
            })
    };
    if text == "all" {
        return Ok(WeekdayView::ALL.to_vec());
    }
    let mut days = Vec::new();
    for part in text.split(',') {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (index(a)?, index(b)?),
            None => (index(part)?, index(part)?),
        };
        if from > to {
            bail!("{part:?}: a range of days runs from Monday to Sunday (mon-fri)");
        }
        for day in &WeekdayView::ALL[from..=to] {
            if days.contains(day) {
                bail!("{} is given twice", day.as_str());
            }
            days.push(*day);
        }
    }
    Ok(days)
}

/// `--hours DAYS HH:MM-HH:MM`, repeated, as the week's hours.
fn parse_hours(values: &[String]) -> Result<Vec<BusinessHoursView>> {
    let mut week: Vec<BusinessHoursView> = Vec::new();
    for pair in values.chunks(2) {
        let [days, range] = pair else {
            bail!("--hours takes days and a time range: --hours mon-fri 09:00-17:00");
        };
        let (start, end) = range
            .split_once('-')
            .with_context(|| format!("{range:?}: a time range is HH:MM-HH:MM"))?;
        for day in parse_days(days)? {
            if week.iter().any(|h| h.day == day) {
                bail!("{} has hours twice", day.as_str());
            }
            week.push(BusinessHoursView {
                day,
                start: start.to_owned(),
                end: end.to_owned(),
            });
        }
    }
    week.sort_by_key(|h| WeekdayView::ALL.iter().position(|d| *d == h.day));
    Ok(week)
}

/// `30m`, `4h`, `1h30m` (business time) as minutes; `none` as no target.
fn parse_minutes(text: &str) -> Result<Option<u32>> {
    if text == "none" {
        return Ok(None);
    }
    let bad = || anyhow::anyhow!("{text:?} is not a time: 30m, 4h, 1h30m or none");
    let (hours, rest) = match text.split_once('h') {
        Some((h, rest)) => (h.parse::<u32>().map_err(|_| bad())?, rest),
        None => (0, text),
    };
    let minutes = match rest {
        "" => 0,
        m => m
            .strip_suffix('m')
            .ok_or_else(bad)?
            .parse::<u32>()
            .map_err(|_| bad())?,
    };
    let total = hours
        .checked_mul(60)
        .and_then(|h| h.checked_add(minutes))
        .ok_or_else(bad)?;
    if total == 0 {
        bail!("{text:?}: a target must be longer than zero (or none)");
    }
    Ok(Some(total))
}

fn parse_severity(text: &str) -> Result<SeverityView> {
    Ok(match text {
        "critical" => SeverityView::Critical,
        "warning" => SeverityView::Warning,
        "info" => SeverityView::Info,
        other => bail!("{other:?} is not a severity: critical, warning or info"),
    })
}

/// Applies `group=percent` (or `group=none`) to the uptime targets; a
/// group is named as in `device group`, compared without case.
fn set_uptime(targets: &mut Vec<UptimeTargetView>, spec: &str) -> Result<()> {
    let (group, percent) = spec
        .rsplit_once('=')
        .with_context(|| format!("--uptime {spec:?}: GROUP=PERCENT, e.g. Servers=99.9"))?;
    let same = |t: &UptimeTargetView| t.group.eq_ignore_ascii_case(group);
    targets.retain(|t| !same(t));
    if percent == "none" {
        return Ok(());
    }
    let percent: f64 = percent
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("--uptime {spec:?}: the percent is a number such as 99.9"))?;
    targets.push(UptimeTargetView {
        group: group.to_owned(),
        percent,
    });
    Ok(())
}

/// Applies `severity=time` to the acknowledge or resolve target.
fn set_target(targets: &mut Vec<SlaTargetView>, spec: &str, acknowledge: bool) -> Result<()> {
    let (severity, time) = spec
        .split_once('=')
        .with_context(|| format!("{spec:?}: give SEVERITY=TIME, e.g. critical=30m"))?;
    let severity = parse_severity(severity)?;
    let minutes = parse_minutes(time)?;
    let target = match targets.iter_mut().find(|t| t.severity == severity) {
        Some(t) => t,
        None => {
            targets.push(SlaTargetView {
                severity,
                acknowledge_minutes: None,
                resolve_minutes: None,
            });
            targets.last_mut().context("just pushed")?
        }
    };
    if acknowledge {
        target.acknowledge_minutes = minutes;
    } else {
        target.resolve_minutes = minutes;
    }
    targets.retain(|t| t.acknowledge_minutes.is_some() || t.resolve_minutes.is_some());
    Ok(())
}

/// Minutes as people read a target: `45m`, `4h`, `1h30m`.
fn minutes_text(m: Option<u64>) -> String {
    match m {
        None => "-".to_owned(),
        Some(m) if m < 60 => format!("{m}m"),
        Some(m) if m % 60 == 0 => format!("{}h", m / 60),
        Some(m) => format!("{}h{}m", m / 60, m % 60),
    }
}

fn severity_name(s: SeverityView) -> &'static str {
    match s {
        SeverityView::Critical => "critical",
        SeverityView::Warning => "warning",
        SeverityView::Info => "info",
    }
}

fn settings_text(s: &SlaSettingsView) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<16}{v}\n"));
    line("Time zone", &s.time_zone);
    let hours: Vec<String> = s
        .business_hours
        .iter()
        .map(|h| format!("{} {}-{}", h.day.as_str(), h.start, h.end))
        .collect();
    line("Business hours", &hours.join(", "));
    line(
        "Holidays",
        &if s.holidays.is_empty() {
            "none".to_owned()
        } else {
            s.holidays.join(", ")
        },
    );
    for severity in [
        SeverityView::Critical,
        SeverityView::Warning,
        SeverityView::Info,
    ] {
        let t = s.targets.iter().find(|t| t.severity == severity);
        let name = severity_name(severity);
        line(
            &format!("{}{}", name[..1].to_uppercase(), &name[1..]),
            &match t {
                Some(t) => format!(
                    "acknowledge within {}, resolve within {}",
                    minutes_text(t.acknowledge_minutes.map(u64::from)),
                    minutes_text(t.resolve_minutes.map(u64::from))
                ),
                None => "no target".to_owned(),
            },
        );
    }
    line(
        "Patch (critical)",
        &s.patch_critical_days.map_or("no target".to_owned(), |d| {
            format!("security updates within {d} days")
        }),
    );
    line(
        "Uptime",
        &if s.uptime_targets.is_empty() {
            "no target".to_owned()
        } else {
            s.uptime_targets
                .iter()
                .map(|u| format!("{} {}%", u.group, u.percent))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    out
}

fn sla_text(sla: &SlaView) -> String {
    let mut out = format!("SLA of {}\n\n", sla.tenant);
    if !sla.configured {
        out.push_str(&format!(
            "None set: nothing is measured. An owner sets one with `bulwark sla set {} \
             --timezone ZONE --hours mon-fri 09:00-17:00 --ack critical=30m --resolve critical=4h`.\n\
             These are the defaults it starts from:\n\n",
            sla.tenant
        ));
    }
    out.push_str(&settings_text(&sla.settings));
    if let (Some(by), Some(at)) = (&sla.updated_by, &sla.updated_at) {
        out.push_str(&format!("{:<16}{at} by {by}\n", "Set"));
    }
    out
}

fn percent(t: &SlaTallyView) -> String {
    let mut text = t
        .attainment_percent
        .map_or("-".to_owned(), |p| format!("{p:.1}%"));
    text.push_str(&format!(" ({}/{}", t.met, t.met + t.breached));
    if t.pending > 0 {
        text.push_str(&format!(", {} pending", t.pending));
    }
    text.push(')');
    text
}

fn report_text(r: &SlaReport, colour: bool) -> String {
    let mut out = format!(
        "SLA of {}, last {} days ({} to {}), business time in {}\n\n",
        r.tenant, r.days, r.from, r.to, r.time_zone
    );
    if !r.configured {
        out.push_str("No SLA is set for this tenant: nothing is measured.\n");
        return out;
    }
    let rows: Vec<Vec<Cell>> = r
        .severities
        .iter()
        .map(|s| {
            vec![
                s.severity.as_str().into(),
                minutes_text(s.acknowledge_target_minutes.map(u64::from)).into(),
                minutes_text(s.resolve_target_minutes.map(u64::from)).into(),
                s.alerts.to_string().into(),
                percent(&s.acknowledge).into(),
                percent(&s.resolve).into(),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &[
            "SEVERITY",
            "ACK TARGET",
            "RESOLVE TARGET",
            "ALERTS",
            "ACKNOWLEDGED IN TIME",
            "RESOLVED IN TIME",
        ],
        &rows,
        colour,
    ));
    out.push_str("\nPer week (alerts within every target, of those decided):\n");
    let rows: Vec<Vec<Cell>> = r
        .weeks
        .iter()
        .map(|w| {
            let mut row: Vec<Cell> = vec![w.start.as_str().into()];
            row.extend(w.severities.iter().map(|s| {
                match s.attainment_percent {
                    Some(p) => format!("{p:.0}% ({}/{})", s.met, s.met + s.breached),
                    None => "-".to_owned(),
                }
                .into()
            }));
            row
        })
        .collect();
    out.push_str(&render_table(
        &["WEEK OF", "CRITICAL", "WARNING", "INFO"],
        &rows,
        colour,
    ));
    if r.breaches.is_empty() {
        out.push_str("\nNo breaches.\n");
    } else {
        out.push_str(&format!("\nBreaches ({}):\n", r.breaches_total));
        let rows: Vec<Vec<Cell>> = r
            .breaches
            .iter()
            .map(|b| {
                vec![
                    b.alert_id.as_str().into(),
                    Cell {
                        text: b.severity.clone(),
                        colour: (b.severity == "critical").then_some(RED),
                    },
                    if b.open {
                        format!("{} (still open)", b.measure)
                    } else {
                        b.measure.clone()
                    }
                    .into(),
                    minutes_text(Some(b.taken_minutes)).into(),
                    minutes_text(Some(u64::from(b.target_minutes))).into(),
                    b.opened_at.as_str().into(),
                    b.summary.as_str().into(),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &[
                "ALERT", "SEVERITY", "MISSED", "TOOK", "TARGET", "OPENED", "SUMMARY",
            ],
            &rows,
            colour,
        ));
    }
    if r.alerts_truncated {
        out.push_str(
            "\nMore alerts were opened than one report reads: only the oldest are counted.\n",
        );
    }
    out.push_str("\nUptime per group (offline alerts, maintenance windows left out):\n");
    if r.uptime.is_empty() {
        out.push_str("  no uptime target set (`bulwark sla set TENANT --uptime Servers=99.9`)\n");
    } else {
        let rows: Vec<Vec<Cell>> = r
            .uptime
            .iter()
            .map(|u| {
                vec![
                    u.group.as_str().into(),
                    format!("{:.2}%", u.target_percent).into(),
                    u.uptime_percent
                        .map_or("-".to_owned(), |p| format!("{p:.2}%"))
                        .into(),
                    match u.met {
                        Some(true) => "met",
                        Some(false) => "BREACHED",
                        None => "not measured",
                    }
                    .into(),
                    u.devices.to_string().into(),
                    minutes_text(Some(u.downtime_minutes)).into(),
                    u.most_down
                        .iter()
                        .map(|d| {
                            format!("{} {}", d.hostname, minutes_text(Some(d.downtime_minutes)))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                        .into(),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &[
                "GROUP",
                "TARGET",
                "UPTIME",
                "",
                "DEVICES",
                "DOWN",
                "DOWN LONGEST",
            ],
            &rows,
            colour,
        ));
        if r.uptime_truncated {
            out.push_str("Only the first devices and outages of the period were read.\n");
        }
    }
    let p = &r.patch_critical;
    out.push_str(&match (p.target_days, p.compliance_percent) {
        (Some(days), Some(percent)) => format!(
            "\nPatch SLA: security updates within {days} days: {percent:.1}% compliant \
             ({} of {} devices).\n",
            p.compliant, p.devices
        ),
        (Some(days), None) => format!(
            "\nPatch SLA: security updates within {days} days: {}.\n",
            p.note
        ),
        (None, _) => "\nPatch SLA: none set.\n".to_owned(),
    });
    if !p.overdue.is_empty() {
        let rows: Vec<Vec<Cell>> = p
            .overdue
            .iter()
            .map(|d| {
                vec![
                    d.hostname.as_str().into(),
                    d.pending_since.as_str().into(),
                    d.overdue_updates.to_string().into(),
                    d.packages.join(", ").into(),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["DEVICE", "PENDING SINCE", "OVERDUE", "PACKAGES"],
            &rows,
            colour,
        ));
    }
    out.push_str(
        "Computed by the server from its alert records and the agents' reports; `bulwark audit \
         verify` checks the logged alert handling they rest on.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_hours_and_times_parse() {
        let days = |t: &str| {
            parse_days(t).map(|d| d.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(","))
        };
        assert_eq!(days("mon-fri").ok().as_deref(), Some("mon,tue,wed,thu,fri"));
        assert_eq!(days("sat,mon-tue").ok().as_deref(), Some("sat,mon,tue"));
        assert_eq!(days("all").ok().map(|d| d.len()), Some(27));
        assert!(parse_days("fri-mon").is_err());
        assert!(parse_days("mon,mon").is_err());
        assert!(parse_days("monday").is_err());
        let week = parse_hours(&[
            "sat".to_owned(),
            "10:00-14:00".to_owned(),
            "mon-fri".to_owned(),
            "09:00-17:00".to_owned(),
        ])
        .expect("hours");
        assert_eq!(week.len(), 6);
        assert_eq!(week[0].day, WeekdayView::Mon);
        assert_eq!(week[5].start, "10:00");
        assert!(parse_hours(&["mon".to_owned(), "09:00".to_owned()]).is_err());
        assert_eq!(parse_minutes("30m").ok(), Some(Some(30)));
        assert_eq!(parse_minutes("4h").ok(), Some(Some(240)));
        assert_eq!(parse_minutes("1h30m").ok(), Some(Some(90)));
        assert_eq!(parse_minutes("none").ok(), Some(None));
        for bad in ["0m", "30", "h", "1d", "-5m", ""] {
            assert!(parse_minutes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uptime_targets_are_set_replaced_and_removed() {
        let mut targets = Vec::new();
        set_uptime(&mut targets, "Servers=99.9").expect("set");
        set_uptime(&mut targets, "Branch Offices=99.5%").expect("set");
        set_uptime(&mut targets, "servers=99.95").expect("replaced");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].group, "servers");
        assert_eq!(targets[1].percent, 99.95);
        set_uptime(&mut targets, "SERVERS=none").expect("removed");
        assert_eq!(targets.len(), 1);
        for bad in ["Servers", "Servers=high"] {
            assert!(set_uptime(&mut targets, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_are_set_and_removed_one_by_one() {
        let mut targets = Vec::new();
        set_target(&mut targets, "critical=30m", true).expect("set");
        set_target(&mut targets, "critical=4h", false).expect("set");
        set_target(&mut targets, "warning=2h", true).expect("set");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].resolve_minutes, Some(240));
        set_target(&mut targets, "warning=none", true).expect("set");
        assert_eq!(targets.len(), 1);
        assert!(set_target(&mut targets, "urgent=5m", true).is_err());
        assert!(set_target(&mut targets, "critical", true).is_err());
    }
}
