//! Server configuration: from `bulwark up` flags or a `bulwark server` TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// How the console and API are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeMode {
    /// `bulwark up`: plain HTTP, loopback only (http://localhost is a secure
    /// context for browsers). Any other address is refused at start-up.
    LoopbackHttp,
    /// `bulwark server`: HTTPS with the server certificate.
    Https,
}

/// Everything the server needs to start. Minimums are checked by [`ServerConfig::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Holds the lock file, the TLS material and (by default) the SQLite database.
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL; default: SQLite at `data_dir/bulwark.db`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// The bus between nodes (RFD 0018): `nats://host:4222` (or `tls://`)
    /// for several nodes on one PostgreSQL database; default: in process,
    /// for one node.
    #[serde(default)]
    pub bus_url: Option<String>,
    /// Console and API address.
    pub listen: SocketAddr,
    /// Agent gateway address (always TLS).
    pub gateway_listen: SocketAddr,
    /// Extra DNS names for the server certificate (the names agents and
    /// browsers use to reach this server).
    #[serde(default)]
    pub public_hostnames: Vec<String>,
    /// Agent heartbeat interval; a connection silent for 3 intervals is closed.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u32,
    /// Most agent connections held at once (each costs one file
    /// descriptor). Default: the open-file limit less a reserve
    /// ([`crate::open_files::agent_cap`]); a larger number is lowered to that.
    #[serde(default)]
    pub max_agent_connections: Option<usize>,
    /// Most agent handshakes (TLS, upgrade, authentication) run at once;
    /// a connection past them waits up to 2 s, then is closed and the agent
    /// retries after its backoff. Default: 64 per core
    /// ([`crate::gateway::admission`]).
    #[serde(default)]
    pub max_agent_handshakes: Option<usize>,
    /// Days the transparency logs keep an entry in the database (at least
    /// [`MIN_RETENTION_DAYS`]; older entries are archived to files first).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Where the transparency logs are exported (RFD 0003, "SIEM export");
    /// `[[siem]]` tables, each with a unique `name`.
    #[serde(default)]
    pub siem: Vec<SiemSink>,
    /// A device silent this long, and not connected, raises a
    /// `device.offline` alert (RFD 0007); never less than 3 heartbeats
    /// (see [`ServerConfig::offline_after`]).
    #[serde(default = "default_offline_alert_secs")]
    pub offline_alert_secs: u32,
    /// The relay alert e-mail goes through (`[smtp]`; RFD 0007). Without
    /// one, e-mail channels queue their messages and say why they wait.
    #[serde(default)]
    pub smtp: Option<SmtpRelay>,
    #[serde(skip, default = "default_mode")]
    pub mode: ServeMode,
}

fn default_offline_alert_secs() -> u32 {
    300
}

fn default_heartbeat_secs() -> u32 {
    30
}

/// DESIGN.md invariant 4: the most important logs are kept at least six
/// months, and no configuration can lower that.
pub const MIN_RETENTION_DAYS: u32 = 180;

/// Default for `retention_days`: a year.
pub const DEFAULT_RETENTION_DAYS: u32 = 365;

fn default_retention_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

fn default_mode() -> ServeMode {
    ServeMode::Https
}

impl ServerConfig {
    /// Configuration for `bulwark up`.
    pub fn quickstart(data_dir: PathBuf, listen: SocketAddr, gateway_listen: SocketAddr) -> Self {
        Self {
            data_dir,
            database_url: None,
            bus_url: None,
            listen,
            gateway_listen,
            public_hostnames: Vec::new(),
            heartbeat_secs: default_heartbeat_secs(),
            max_agent_connections: None,
            max_agent_handshakes: None,
            retention_days: default_retention_days(),
            siem: Vec::new(),
            smtp: None,
            offline_alert_secs: default_offline_alert_secs(),
            mode: ServeMode::LoopbackHttp,
        }
    }

    /// Refuses configurations that would weaken the server.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.mode == ServeMode::LoopbackHttp && !self.listen.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve plain HTTP on {}: without TLS the console may only listen on a loopback address \
                 (127.0.0.1 or ::1); use `bulwark server` with HTTPS for other addresses",
                self.listen
            );
        }
        if !(1..=3600).contains(&self.heartbeat_secs) {
            anyhow::bail!(
                "heartbeat_secs must be between 1 and 3600, got {}",
                self.heartbeat_secs
            );
        }
        if self.retention_days < MIN_RETENTION_DAYS {
            anyhow::bail!(
                "retention_days = {} is below the minimum of {MIN_RETENTION_DAYS} days: audit logs are kept \
                 at least six months (DESIGN.md invariant 4); set {MIN_RETENTION_DAYS} or more",
                self.retention_days
            );
        }
        if let Some(smtp) = &self.smtp {
            smtp.validate()?;
        }
        if self.offline_alert_secs > 7 * 24 * 3600 {
            anyhow::bail!(
                "offline_alert_secs = {} is more than 7 days",
                self.offline_alert_secs
            );
        }
        if let Some(url) = &self.bus_url
            && !(url.starts_with("nats://") || url.starts_with("tls://"))
        {
            anyhow::bail!("bus_url must start with nats:// or tls://, got {url:?}");
        }
        if self.bus_url.is_some() && !self.database_url().starts_with("postgres") {
            anyhow::bail!(
                "bus_url is for several nodes on one PostgreSQL database; with SQLite there is one node \
                 and its bus is in process (set database_url to postgres://...)"
            );
        }
        let mut names = std::collections::HashSet::new();
        for sink in &self.siem {
            sink.validate()?;
            if !names.insert(sink.name()) {
                anyhow::bail!("two SIEM sinks are named {:?}", sink.name());
            }
        }
        Ok(())
    }

    /// How long a device must be silent to raise an offline alert: the
    /// configured time, but at least the 3 heartbeats after which its
    /// connection counts as dead.
    pub fn offline_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(
            self.offline_alert_secs
                .max(self.heartbeat_secs.saturating_mul(3)),
        ))
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("bulwark.db").display()
            ),
        }
    }
}

/// The SMTP relay for alert e-mail (`[smtp]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpRelay {
    /// `host:port` of the relay (submission, usually port 587).
    pub relay: String,
    /// The sender address, e.g. `bulwark@msp.example`.
    pub from: String,
    /// The name the relay's certificate must carry (default: the host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// A PEM file of CA certificates to trust for the relay, instead of the
    /// public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `starttls` (the default: refuse a relay that does not offer it) or
    /// `none`, allowed only for a relay on a loopback address.
    #[serde(default = "default_smtp_security")]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("relay", &self.relay)
            .field("from", &self.from)
            .field("server_name", &self.server_name)
            .field("ca_file", &self.ca_file)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// How alert e-mail is protected on its way to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    None,
}

fn default_smtp_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

impl SmtpRelay {
    /// The relay's host and port.
    pub fn host_port(&self) -> anyhow::Result<(String, u16)> {
        let (host, port) = self
            .relay
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("smtp relay {:?} is not host:port", self.relay))?;
        let port = port
            .parse()
            .map_err(|_| anyhow::anyhow!("smtp relay {:?}: bad port", self.relay))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        anyhow::ensure!(!host.is_empty(), "smtp relay {:?} has no host", self.relay);
        Ok((host.to_owned(), port))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let (host, _) = self.host_port()?;
        anyhow::ensure!(
            self.from.contains('@') && !self.from.contains(['\r', '\n']),
            "smtp from {:?} is not an e-mail address",
            self.from
        );
        if self.security == SmtpSecurity::None {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            anyhow::ensure!(
                loopback,
                "smtp security = \"none\" is allowed only for a relay on a loopback address, \
                 not {host}: alert e-mail names customers and their incidents"
            );
        }
        anyhow::ensure!(
            self.username.is_some() == self.password.is_some(),
            "smtp username and password go together"
        );
        Ok(())
    }
}

/// One SIEM export destination (`[[siem]]` in the configuration file).
/// Its `name` keys its delivery cursors in the database: renaming a sink
/// makes it start again from the first entry of every log.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SiemSink {
    /// RFC 5424 messages over TLS (RFC 5425, octet-counting framing). The
    /// protocol has no acknowledgement: a receiver that stops (frozen,
    /// then killed) loses what was in flight. Prefer [`SiemSink::Relp`].
    Syslog(SyslogSink),
    /// RFC 5424 messages over RELP (rsyslog's `imrelp`) over TLS: every
    /// message is acknowledged by the receiver; the recommended syslog sink.
    /// Same fields as `syslog`.
    Relp(SyslogSink),
    /// One JSON object per line, appended to a local file.
    NdjsonFile(NdjsonFileSink),
    /// Batches of JSON lines, POSTed as `application/x-ndjson`.
    NdjsonHttp(NdjsonHttpSink),
}

/// `type = "syslog"` and `type = "relp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    pub name: String,
    /// `host:port` of the receiver (6514 is syslog over TLS's registered
    /// port; RELP has none, 2514 is usual).
    pub address: String,
    /// The name the receiver's certificate must carry (DNS name or IP address).
    pub server_name: String,
    /// PEM file of the CA certificate(s) the receiver's certificate must chain to.
    pub ca_file: PathBuf,
    /// `"audit"` (facility 13, log audit; the default) or `"authpriv"` (10).
    #[serde(default)]
    pub facility: SyslogFacility,
    /// The HOSTNAME field; default: this machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// The syslog facility of exported messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogFacility {
    /// 13, "log audit".
    #[default]
    Audit,
    /// 10, "security/authorization messages (private)".
    Authpriv,
}

impl SyslogFacility {
    /// The facility's number (RFC 5424 §6.2.1).
    pub fn code(self) -> u8 {
        match self {
            SyslogFacility::Audit => 13,
            SyslogFacility::Authpriv => 10,
        }
    }
}

/// `type = "ndjson_file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonFileSink {
    pub name: String,
    /// The file lines are appended to (created if missing, mode 0600).
    pub path: PathBuf,
}

/// `type = "ndjson_http"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonHttpSink {
    pub name: String,
    /// `http://` or `https://` URL the batches are POSTed to.
    pub url: String,
    /// PEM CA certificate(s) trusted for an `https` URL, besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for NdjsonHttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonHttpSink")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Longest sink name (it is stored with each cursor).
pub const MAX_SIEM_SINK_NAME: usize = 64;

impl SiemSink {
    pub fn name(&self) -> &str {
        match self {
            SiemSink::Syslog(s) | SiemSink::Relp(s) => &s.name,
            SiemSink::NdjsonFile(s) => &s.name,
            SiemSink::NdjsonHttp(s) => &s.name,
        }
    }

    /// Refuses a sink that could not work (checked at start-up, before
    /// anything is sent).
    pub fn validate(&self) -> anyhow::Result<()> {
        let name = self.name();
        if name.is_empty()
            || name.len() > MAX_SIEM_SINK_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            anyhow::bail!(
                "SIEM sink name {name:?} must be 1 to {MAX_SIEM_SINK_NAME} letters, digits, `-`, `_` or `.`"
            );
        }
        match self {
            SiemSink::Syslog(s) | SiemSink::Relp(s) => {
                let Some((host, port)) = s.address.rsplit_once(':') else {
                    anyhow::bail!("SIEM sink {name}: address {:?} is not host:port", s.address);
                };
                if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                    anyhow::bail!("SIEM sink {name}: address {:?} is not host:port", s.address);
                }
                if rustls::pki_types::ServerName::try_from(s.server_name.as_str()).is_err() {
                    anyhow::bail!(
                        "SIEM sink {name}: server_name {:?} is not a DNS name or IP address",
                        s.server_name
                    );
                }
                if let Some(hostname) = &s.hostname
                    && (hostname.is_empty()
                        || hostname.len() > 255
                        || !hostname.bytes().all(|b| (33..=126).contains(&b)))
                {
                    anyhow::bail!(
                        "SIEM sink {name}: hostname must be 1 to 255 printable ASCII characters"
                    );
                }
            }
            SiemSink::NdjsonFile(s) => {
                if s.path.as_os_str().is_empty() {
                    anyhow::bail!("SIEM sink {name}: path is empty");
                }
            }
            SiemSink::NdjsonHttp(s) => {
                if !(s.url.starts_with("https://") || s.url.starts_with("http://")) {
                    anyhow::bail!("SIEM sink {name}: url must start with https:// or http://");
                }
                if let Some(token) = &s.token
                    && (token.is_empty() || !token.bytes().all(|b| (33..=126).contains(&b)))
                {
                    anyhow::bail!("SIEM sink {name}: token must be printable ASCII without spaces");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn with_sinks(sinks: serde_json::Value) -> anyhow::Result<ServerConfig> {
        let config: ServerConfig = serde_json::from_value(serde_json::json!({
            "data_dir": "/tmp/x",
            "listen": "127.0.0.1:0",
            "gateway_listen": "127.0.0.1:0",
            "siem": sinks,
        }))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_bus_needs_nats_and_postgresql() {
        let with = |bus: &str, database: Option<&str>| -> anyhow::Result<()> {
            let mut value = serde_json::json!({
                "data_dir": "/tmp/x",
                "listen": "127.0.0.1:0",
                "gateway_listen": "127.0.0.1:0",
                "bus_url": bus,
            });
            if let Some(url) = database {
                value["database_url"] = url.into();
            }
            let config: ServerConfig = serde_json::from_value(value)?;
            config.validate()
        };
        let pg = Some("postgres://127.0.0.1/test");
        with("nats://127.0.0.1:4222", pg).unwrap();
        with("tls://nats.example.net:4222", pg).unwrap();
        let sqlite = with("nats://127.0.0.1:4222", None).unwrap_err().to_string();
        assert!(sqlite.contains("PostgreSQL"), "{sqlite}");
        let scheme = with("http://127.0.0.1:4222", pg).unwrap_err().to_string();
        assert!(scheme.contains("nats://"), "{scheme}");
    }

    #[test]
    fn retention_below_six_months_is_refused_naming_the_minimum() {
        let with = |days: Option<u32>| -> anyhow::Result<ServerConfig> {
            let mut value = serde_json::json!({
                "data_dir": "/tmp/x",
                "listen": "127.0.0.1:0",
                "gateway_listen": "127.0.0.1:0",
            });
            if let Some(days) = days {
                value["retention_days"] = days.into();
            }
            let config: ServerConfig = serde_json::from_value(value)?;
            config.validate()?;
            Ok(config)
        };
        assert_eq!(with(None).unwrap().retention_days, 365);
        assert_eq!(with(Some(180)).unwrap().retention_days, 180);
        let error = with(Some(179)).unwrap_err().to_string();
        assert!(error.contains("minimum of 180 days"), "{error}");
        assert!(with(Some(0)).is_err());
    }

    #[test]
    fn an_smtp_relay_needs_starttls_off_loopback() {
        let relay = |relay: &str, security: SmtpSecurity| SmtpRelay {
            relay: relay.to_owned(),
            from: "bulwark@msp.example".to_owned(),
            server_name: None,
            ca_file: None,
            security,
            username: Some("bulwark".to_owned()),
            password: Some("s3cret".to_owned()),
        };
        assert!(
            relay("smtp.example:587", SmtpSecurity::Starttls)
                .validate()
                .is_ok()
        );
        assert!(relay("127.0.0.1:25", SmtpSecurity::None).validate().is_ok());
        assert!(relay("[::1]:25", SmtpSecurity::None).validate().is_ok());
        let plain = relay("smtp.example:25", SmtpSecurity::None).validate();
        assert!(format!("{:#}", plain.unwrap_err()).contains("loopback"));
        assert!(
            relay("smtp.example", SmtpSecurity::Starttls)
                .validate()
                .is_err()
        );
        let mut bad_from = relay("smtp.example:587", SmtpSecurity::Starttls);
        bad_from.from = "x@y\r\nBcc: z@w".to_owned();
        assert!(bad_from.validate().is_err());
        let mut lone_user = relay("smtp.example:587", SmtpSecurity::Starttls);
        lone_user.password = None;
        assert!(lone_user.validate().is_err());
        assert!(!format!("{:?}", relay("a:1", SmtpSecurity::Starttls)).contains("s3cret"));
        let parsed: SmtpRelay = serde_json::from_value(
            serde_json::json!({"relay": "smtp.example:587", "from": "b@x.example"}),
        )
        .unwrap();
        assert_eq!(parsed.security, SmtpSecurity::Starttls);
    }

    #[test]
    fn siem_sinks_parse_and_validate() {
        let config = with_sinks(serde_json::json!([
            {"type": "syslog", "name": "soc", "address": "siem.example:6514",
             "server_name": "siem.example", "ca_file": "/etc/ca.pem", "facility": "authpriv"},
            {"type": "ndjson_file", "name": "archive", "path": "/var/log/a.ndjson"},
            {"type": "ndjson_http", "name": "hec", "url": "https://h.example/in", "token": "t0k"},
        ]))
        .unwrap();
        assert_eq!(config.siem.len(), 3);
        assert!(matches!(&config.siem[0], SiemSink::Syslog(s) if s.facility.code() == 10));
        // The token never appears in debug output.
        assert!(!format!("{:?}", config.siem[2]).contains("t0k"));

        let file =
            |name: &str| serde_json::json!({"type": "ndjson_file", "name": name, "path": "/x"});
        // Unique names.
        assert!(with_sinks(serde_json::json!([file("a"), file("a")])).is_err());
        // Names: 1 to 64 of [A-Za-z0-9._-].
        assert!(with_sinks(serde_json::json!([file("")])).is_err());
        assert!(with_sinks(serde_json::json!([file("a b")])).is_err());
        assert!(with_sinks(serde_json::json!([file(&"a".repeat(65))])).is_err());
        assert!(with_sinks(serde_json::json!([file(&"a".repeat(64))])).is_ok());
        // Unknown fields and kinds are refused.
        assert!(
            with_sinks(
                serde_json::json!([{"type": "ndjson_file", "name": "a", "path": "/x", "extra": 1}])
            )
            .is_err()
        );
        assert!(with_sinks(serde_json::json!([{"type": "kafka", "name": "a"}])).is_err());
        // Addresses, URLs, server names.
        let syslog = |address: &str, server_name: &str| {
            serde_json::json!([{"type": "syslog", "name": "s", "address": address,
                "server_name": server_name, "ca_file": "/ca.pem"}])
        };
        assert!(with_sinks(syslog("h:6514", "h")).is_ok());
        assert!(with_sinks(syslog("h", "h")).is_err());
        assert!(with_sinks(syslog("h:0", "h")).is_err());
        assert!(with_sinks(syslog("h:6514", "bad name!")).is_err());
        // RELP takes the syslog sink's fields, checked the same way.
        let relp = |address: &str| {
            serde_json::json!([{"type": "relp", "name": "r", "address": address,
                "server_name": "h", "ca_file": "/ca.pem", "facility": "authpriv"}])
        };
        let config = with_sinks(relp("h:2514")).unwrap();
        assert!(
            matches!(&config.siem[0], SiemSink::Relp(s) if s.facility.code() == 10 && config.siem[0].name() == "r")
        );
        assert!(with_sinks(relp("h")).is_err());
        assert!(
            with_sinks(
                serde_json::json!([{"type": "relp", "name": "r", "address": "h:2514",
                "server_name": "h", "ca_file": "/ca.pem", "window": 5}])
            )
            .is_err()
        );
        assert!(
            with_sinks(serde_json::json!([{"type": "ndjson_http", "name": "h", "url": "ftp://x"}]))
                .is_err()
        );
    }
}
