//! The Bulwark endpoint agent.
//!
//! Lean by design (its footprint is on every managed machine): no web
//! server, no templates, no database driver. It holds the device key, pins
//! the server CA and the tenant trust root named in its enrolment token,
//! keeps one authenticated connection, reports inventory, and runs the jobs
//! that its tenant's policy authorises ([`trust`], [`jobs`]), and runs the
//! monitoring checks that policy defines ([`checks`]).

pub mod admins;
pub mod alarms;
pub mod backoff;
pub mod checks;
pub mod connection;
pub mod files;
pub mod identity;
pub mod install;
pub mod inventory;
pub mod jobs;
pub mod packages;
pub mod pinning;
pub mod ports;
pub mod processes;
pub mod rpm;
pub mod self_update;
pub mod services;
pub mod shell;
pub mod supervisor;
mod text;
pub mod trust;
pub mod updates;
pub mod utmp;

/// Version of this agent build, reported to the server.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
