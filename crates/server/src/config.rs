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
    /// Most agent connections held at once (each costs one file descriptor).
    #[serde(default = "default_max_agent_connections")]
    pub max_agent_connections: usize,
    #[serde(skip, default = "default_mode")]
    pub mode: ServeMode,
}

fn default_heartbeat_secs() -> u32 {
    30
}

fn default_max_agent_connections() -> usize {
    16_000
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
            listen,
            gateway_listen,
            public_hostnames: Vec::new(),
            heartbeat_secs: default_heartbeat_secs(),
            max_agent_connections: default_max_agent_connections(),
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
        Ok(())
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
