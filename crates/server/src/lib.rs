//! Bulwark's server: the JSON API and web console (one axum router), the agent
//! gateway (TLS + WebSocket, its own listener) and operator authentication.
//!
//! The server stores and relays; it never holds a key that can make an agent
//! run anything (DESIGN.md invariants 1-3). Decisions live in pure modules
//! ([`auth::policy`]); sockets, files and the database stay at the edges.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod bus;
pub mod chart;
pub mod config;
pub mod console;
pub mod datadir;
pub mod duties;
pub mod gateway;
pub mod metrics_history;
pub mod open_files;
pub mod patch_rings;
pub mod presence;
pub mod runtime;
pub mod scheduler;
pub mod shell_relay;
pub mod state;
pub mod tls;
pub mod transparency_log;

pub use config::{ServeMode, ServerConfig};
pub use runtime::{RunningServer, start};

/// Version of this build, reported to agents and in the console.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch: the one clock reading at the edge,
/// passed down as an argument to everything that needs time.
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 text of a time in milliseconds since the Unix epoch.
pub fn rfc3339(millis: i64) -> String {
    let nanos = i128::from(millis) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
