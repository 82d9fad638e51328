//! Sending the outbox (RFD 0007): e-mail through the configured SMTP relay
//! (STARTTLS required unless the relay is on loopback), webhooks as a JSON
//! POST (Slack- and Teams-compatible `text`, and the alert itself), and
//! PagerDuty Events API v2 events (trigger, acknowledge, resolve, keyed by
//! the alert so the incident there follows the alert here). A
//! notification counts as sent only when the receiver accepted it (SMTP
//! `250` after the message, HTTP 2xx); otherwise it is tried again with a
//! growing wait, and given up (recorded as `notification.failed`) after
//! [`MAX_ATTEMPTS`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bulwark_store::{Alert, ChannelKind, DueNotification, NotificationEvent, Store};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::config::{SmtpRelay, SmtpSecurity};

/// Attempts before a notification is given up.
pub const MAX_ATTEMPTS: u32 = 10;
/// Wait after the first failure; doubled after each, capped at [`RETRY_CAP`].
pub const RETRY_START: Duration = Duration::from_secs(10);
pub const RETRY_CAP: Duration = Duration::from_secs(3600);
/// How often the outbox is looked at when nothing nudges it.
const POLL: Duration = Duration::from_secs(2);
/// Notifications sent per pass.
const BATCH: u32 = 20;
/// Connect, TLS and whole-exchange timeout for one notification.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// When to try again after `attempts` failed attempts (counting this one),
/// or `None` to give up.
pub fn retry_after(attempts: u32) -> Option<Duration> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    Some((RETRY_START * factor).min(RETRY_CAP))
}

/// A header-safe line: no control characters, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// The e-mail subject: `[Bulwark] CRITICAL acme: …`, and for what became
/// of it, `[Bulwark] RESOLVED CRITICAL acme: …`.
pub fn subject(alert: &Alert, event: NotificationEvent) -> String {
    let tenant = alert.tenant_name.as_deref().unwrap_or("MSP");
    let became = match event {
        NotificationEvent::Trigger => "",
        NotificationEvent::Acknowledge => "ACKNOWLEDGED ",
        NotificationEvent::Resolve => "RESOLVED ",
    };
    one_line(
        &format!(
            "[Bulwark] {became}{} {tenant}: {}",
            alert.severity.as_str().to_uppercase(),
            alert.summary
        ),
        200,
    )
}

/// Who acknowledged or resolved the alert and when, for a follow-up
/// (`None` for the trigger, or before the change is recorded).
fn follow_up_line(alert: &Alert, event: NotificationEvent) -> Option<String> {
    let (verb, by, at) = match event {
        NotificationEvent::Trigger => return None,
        NotificationEvent::Acknowledge => (
            "Acknowledged",
            alert.acknowledged_by.as_deref()?,
            alert.acknowledged_at?,
        ),
        NotificationEvent::Resolve => (
            "Resolved",
            alert.resolved_by.as_deref()?,
            alert.resolved_at?,
        ),
    };
    let minutes = (at - alert.opened_at).max(0) / 60_000;
    Some(format!(
        "{verb} by {} at {}, {}h {:02}m after it opened.",
        one_line(by, 100),
        crate::rfc3339(at),
        minutes / 60,
        minutes % 60
    ))
}

/// The plain-text body: what happened (and, for a follow-up, what became
/// of it), where to look, and why the mail itself is not proof of anything.
pub fn body(alert: &Alert, event: NotificationEvent, console_url: &str) -> String {
    let mut text = match follow_up_line(alert, event) {
        Some(line) => format!("{line}\n\n{}\n\n", alert.summary),
        None => format!("{}\n\n", alert.summary),
    };
    let tenant = alert.tenant_name.as_deref().unwrap_or("(MSP-wide)");
    text.push_str(&format!("Tenant:    {tenant}\n"));
    text.push_str(&format!("Severity:  {}\n", alert.severity.as_str()));
    text.push_str(&format!("Opened:    {}\n", crate::rfc3339(alert.opened_at)));
    if let Some(device) = &alert.device_id {
        text.push_str(&format!("Device:    {device}\n"));
    }
    if let (Some(log), Some(idx)) = (&alert.log_id, alert.log_idx) {
        text.push_str(&format!("Log entry: {log} #{idx}\n"));
    }
    text.push_str(&format!("Alert:     {console_url}alerts/{}\n\n", alert.id));
    text.push_str(&alert.detail);
    text.push_str(
        "\n\n-- \nThis message comes from the Bulwark server. It can tell you that something \
         is wrong; it cannot prove that nothing is. Check what it names with the bulwark CLI on \
         your own machine: it verifies signatures and the transparency log itself.\n",
    );
    text
}

/// The webhook body: `text` for Slack and Teams, the event (`trigger`,
/// `acknowledge`, `resolve`) and the alert for the rest.
pub fn webhook_json(
    alert: &Alert,
    event: NotificationEvent,
    console_url: &str,
) -> serde_json::Value {
    let mut text = subject(alert, event);
    if let Some(line) = follow_up_line(alert, event) {
        text.push('\n');
        text.push_str(&line);
    }
    serde_json::json!({
        "text": format!("{text}\n{console_url}alerts/{}", alert.id),
        "event": event.as_str(),
        "alert": {
            "id": alert.id,
            "tenant": alert.tenant_name,
            "device_id": alert.device_id,
            "kind": alert.kind,
            "severity": alert.severity.as_str(),
            "state": alert.state.as_str(),
            "summary": alert.summary,
            "detail": alert.detail,
            "opened_at": crate::rfc3339(alert.opened_at),
            "acknowledged_by": alert.acknowledged_by,
            "acknowledged_at": alert.acknowledged_at.map(crate::rfc3339),
            "resolved_by": alert.resolved_by,
            "resolved_at": alert.resolved_at.map(crate::rfc3339),
            "log_id": alert.log_id,
            "log_idx": alert.log_idx,
        }
    })
}

/// A PagerDuty Events API v2 event for `alert`: the trigger carries what
/// happened and a link back; acknowledge and resolve name the incident by
/// its dedup key only, as the API asks.
pub fn pagerduty_json(
    alert: &Alert,
    event: NotificationEvent,
    routing_key: &str,
    console_url: &str,
) -> serde_json::Value {
    let dedup_key = format!("bulwark-alert-{}", alert.id);
    if event != NotificationEvent::Trigger {
        return serde_json::json!({
            "routing_key": routing_key,
            "event_action": event.as_str(),
            "dedup_key": dedup_key,
        });
    }
    let severity = match alert.severity {
        bulwark_store::Severity::Critical => "critical",
        bulwark_store::Severity::Warning => "warning",
        bulwark_store::Severity::Info => "info",
    };
    let tenant = alert.tenant_name.as_deref().unwrap_or("MSP");
    let source = alert.device_id.as_deref().map_or_else(
        || format!("tenant {tenant}"),
        |device| format!("device {device}"),
    );
    let mut details = serde_json::json!({
        "detail": alert.detail.chars().take(4000).collect::<String>(),
        "kind": alert.kind,
        "note": "From the Bulwark server: it can tell you something is wrong, not prove that \
                 nothing is. Check with the bulwark CLI, which verifies signatures and the log.",
    });
    if let (Some(log), Some(idx)) = (&alert.log_id, alert.log_idx) {
        details["log_entry"] = serde_json::json!(format!("{log} #{idx}"));
    }
    serde_json::json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            // PagerDuty keeps 1,024 characters of a summary.
            "summary": one_line(&subject(alert, NotificationEvent::Trigger), 1024),
            "source": source,
            "severity": severity,
            "timestamp": crate::rfc3339(alert.opened_at),
            "component": alert.device_id,
            "group": tenant,
            "class": alert.kind,
            "custom_details": details,
        },
        "client": "Bulwark",
        "client_url": console_url,
        "links": [{
            "href": format!("{console_url}alerts/{}", alert.id),
            "text": "The alert in Bulwark",
        }],
    })
}

/// What sends notifications.
pub struct Notifier {
    store: Store,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox)>,
    http: reqwest::Client,
    console_url: String,
    /// Woken when notifications are queued.
    pub nudge: Arc<Notify>,
}

fn smtp_transport(
    relay: &SmtpRelay,
) -> anyhow::Result<(AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox)> {
    let (host, port) = relay.host_port()?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .port(port)
        .timeout(Some(IO_TIMEOUT));
    builder = match relay.security {
        SmtpSecurity::Starttls => {
            let name = relay.server_name.clone().unwrap_or_else(|| host.clone());
            let mut tls = TlsParameters::builder(name);
            if let Some(path) = &relay.ca_file {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading smtp ca_file {}", path.display()))?;
                let cert = Certificate::from_pem(&pem).with_context(|| {
                    format!("smtp ca_file {} is not a PEM certificate", path.display())
                })?;
                tls = tls.add_root_certificate(cert);
            }
            builder.tls(Tls::Required(
                tls.build_rustls().context("SMTP TLS settings")?,
            ))
        }
        SmtpSecurity::None => builder.tls(Tls::None),
    };
    if let (Some(user), Some(password)) = (&relay.username, &relay.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let from = relay
        .from
        .parse()
        .with_context(|| format!("smtp from {:?}", relay.from))?;
    Ok((builder.build(), from))
}

impl Notifier {
    pub fn new(
        store: Store,
        smtp: Option<&SmtpRelay>,
        console_url: String,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            smtp: smtp.map(smtp_transport).transpose()?,
            http: crate::tls::https_client(Vec::new(), "bulwark-alerts", IO_TIMEOUT)?,
            console_url,
            nudge: Arc::new(Notify::new()),
        })
    }

    async fn send(&self, due: &DueNotification) -> anyhow::Result<()> {
        match due.channel.kind {
            ChannelKind::Email => {
                let Some((transport, from)) = &self.smtp else {
                    bail!("no SMTP relay is configured ([smtp] in the server configuration)");
                };
                let to = due.channel.target.parse().with_context(|| {
                    format!("{:?} is not an e-mail address", due.channel.target)
                })?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject(&due.alert, due.event))
                    .header(ContentType::TEXT_PLAIN)
                    .body(body(&due.alert, due.event, &self.console_url))
                    .context("building the message")?;
                transport.send(message).await.context("the SMTP relay")?;
            }
            ChannelKind::Webhook => {
                let answer = self
                    .http
                    .post(&due.channel.target)
                    .json(&webhook_json(&due.alert, due.event, &self.console_url))
                    .send()
                    .await
                    .context("the webhook")?;
                let status = answer.status();
                if !status.is_success() {
                    bail!("the webhook answered {status}");
                }
            }
            ChannelKind::PagerDuty => {
                let key = due
                    .channel
                    .routing_key
                    .as_deref()
                    .context("the PagerDuty channel has no routing key")?;
                let answer = self
                    .http
                    .post(&due.channel.target)
                    .json(&pagerduty_json(
                        &due.alert,
                        due.event,
                        key,
                        &self.console_url,
                    ))
                    .send()
                    .await
                    .context("PagerDuty")?;
                // 202 Accepted; 400 is an event PagerDuty will never take
                // (retrying changes nothing, but the attempts are bounded
                // and the failure stays visible on the alert).
                let status = answer.status();
                if !status.is_success() {
                    let text = answer.text().await.unwrap_or_default();
                    bail!("PagerDuty answered {status}: {}", one_line(&text, 200));
                }
            }
        }
        Ok(())
    }

    /// Sends what is due now; returns how many were looked at. Under a
    /// lease (`fence`), each is sent only while this node still holds the
    /// alert mail duty: a node that lost it (paused, cut off) stops
    /// before sending what the new holder will send.
    pub async fn pass(&self, fence: Option<&crate::duties::Fence>) -> anyhow::Result<usize> {
        let now = crate::now_millis();
        let mut due = Vec::new();
        let mut hours_of: std::collections::HashMap<Option<String>, Option<bool>> =
            std::collections::HashMap::new();
        for escalation in self.store.escalations_due(now).await? {
            let hours = match hours_of.get(&escalation.tenant_id) {
                Some(hours) => *hours,
                None => {
                    let hours =
                        super::business_hours(&self.store, escalation.tenant_id.as_deref(), now)
                            .await;
                    hours_of.insert(escalation.tenant_id.clone(), hours);
                    hours
                }
            };
            // A channel kept for other hours is told when they come, if
            // nobody acknowledged by then.
            if escalation.hours.tells(hours) {
                due.push(escalation);
            }
        }
        let escalated = self.store.queue_escalations(&due, now).await?;
        if escalated > 0 {
            info!(
                escalated,
                "Alerts nobody acknowledged in time: escalation channels told."
            );
        }
        let due = self.store.due_notifications(now, BATCH).await?;
        for n in &due {
            if let Some(fence) = fence
                && !fence.holds().await
            {
                warn!(
                    fencing = fence.token(),
                    "This node no longer holds the alert mail duty; not sending."
                );
                return Ok(0);
            }
            match self.send(n).await {
                Ok(()) => {
                    info!(alert = %n.alert.id, channel = %n.channel.id, kind = n.channel.kind.as_str(), "Alert notification sent.");
                    self.store
                        .notification_sent(&n.id, crate::now_millis())
                        .await?;
                }
                Err(error) => {
                    let attempts = n.attempts.saturating_add(1);
                    let retry = retry_after(attempts).map(|wait| {
                        crate::now_millis()
                            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
                    });
                    warn!(alert = %n.alert.id, channel = %n.channel.id, attempts, error = %format!("{error:#}"), "Alert notification failed.");
                    self.store
                        .notification_attempt_failed(
                            n,
                            &format!("{error:#}"),
                            retry,
                            crate::now_millis(),
                        )
                        .await?;
                }
            }
        }
        Ok(due.len())
    }
}

/// The notifier's task: a pass whenever nudged or every [`POLL`].
pub async fn run(
    notifier: Arc<Notifier>,
    fence: Option<crate::duties::Fence>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let more = match notifier.pass(fence.as_ref()).await {
            Ok(n) => n == BATCH as usize,
            Err(error) => {
                warn!(error = %format!("{error:#}"), "The alert notifier could not read its outbox.");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = notifier.nudge.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_and_stop() {
        assert_eq!(retry_after(1), Some(Duration::from_secs(10)));
        assert_eq!(retry_after(2), Some(Duration::from_secs(20)));
        assert_eq!(retry_after(9), Some(Duration::from_secs(2560)));
        assert_eq!(retry_after(MAX_ATTEMPTS), None);
    }

    fn alert() -> Alert {
        Alert {
            id: "a1".into(),
            tenant_id: Some("t".into()),
            tenant_name: Some("acme".into()),
            device_id: None,
            kind: "alert.log_refused".into(),
            severity: bulwark_store::Severity::Critical,
            summary: "x\r\nBcc: evil@example.com".into(),
            detail: String::new(),
            state: bulwark_store::AlertState::Open,
            opened_at: 0,
            last_seen_at: 0,
            occurrences: 1,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            log_id: None,
            log_idx: None,
            silenced: None,
        }
    }

    #[test]
    fn a_subject_cannot_carry_headers() {
        let s = subject(&alert(), NotificationEvent::Trigger);
        assert!(s.starts_with("[Bulwark] CRITICAL acme: x  Bcc"), "{s}");
        assert!(!s.contains(['\r', '\n']));
    }

    #[test]
    fn follow_ups_say_who_and_when_in_mail_and_webhook() {
        let mut alert = alert();
        alert.opened_at = 1_700_000_000_000;
        alert.state = bulwark_store::AlertState::Resolved;
        alert.resolved_by = Some("alice\r\nBcc: x".into());
        alert.resolved_at = Some(1_700_000_000_000 + 95 * 60_000);
        let s = subject(&alert, NotificationEvent::Resolve);
        assert!(s.starts_with("[Bulwark] RESOLVED CRITICAL acme:"), "{s}");
        let text = body(&alert, NotificationEvent::Resolve, "https://rmm.example/");
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("Resolved by alice  Bcc: x at 2023-11-14T23:48")
                && first.ends_with("1h 35m after it opened."),
            "{first}"
        );
        let hook = webhook_json(&alert, NotificationEvent::Resolve, "https://rmm.example/");
        assert_eq!(hook["event"], "resolve");
        assert_eq!(hook["alert"]["state"], "resolved");
        assert!(
            hook["text"]
                .as_str()
                .is_some_and(|t| t.contains("Resolved by alice"))
        );
        // The trigger's mail is as before: no follow-up line.
        let trigger = body(&alert, NotificationEvent::Trigger, "https://rmm.example/");
        assert!(trigger.starts_with("x\r\nBcc"), "{trigger}");
        assert_eq!(
            webhook_json(&alert, NotificationEvent::Trigger, "https://rmm.example/")["event"],
            "trigger"
        );
    }

    #[test]
    fn pagerduty_events_follow_the_v2_shape() {
        let mut alert = alert();
        alert.device_id = Some("d1".into());
        alert.log_id = Some("t".into());
        alert.log_idx = Some(7);
        let trigger = pagerduty_json(
            &alert,
            NotificationEvent::Trigger,
            "KEY",
            "https://rmm.example/",
        );
        assert_eq!(trigger["routing_key"], "KEY");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "bulwark-alert-a1");
        let payload = &trigger["payload"];
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["source"], "device d1");
        assert_eq!(payload["group"], "acme");
        assert!(
            payload["summary"]
                .as_str()
                .is_some_and(|s| !s.contains('\n'))
        );
        assert_eq!(payload["custom_details"]["log_entry"], "t #7");
        assert_eq!(trigger["links"][0]["href"], "https://rmm.example/alerts/a1");
        for event in [NotificationEvent::Acknowledge, NotificationEvent::Resolve] {
            let follow = pagerduty_json(&alert, event, "KEY", "https://rmm.example/");
            assert_eq!(follow["event_action"], event.as_str());
            assert_eq!(follow["dedup_key"], "bulwark-alert-a1");
            assert!(follow.get("payload").is_none());
        }
    }
}
