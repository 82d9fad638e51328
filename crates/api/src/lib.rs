//! The JSON API under `/api/v1/`, as types: every route's request, response
//! and error bodies, one module per route family. The server answers with
//! these and generates its OpenAPI document from them; the CLI and the
//! end-to-end tests decode them, so a renamed field breaks the build instead
//! of printing "-".
//!
//! Nothing here is trusted by an agent: these are what the server *says*.
//! Whatever an agent or an operator must verify (signed statements, tree
//! heads, proofs) travels inside them as the exact bytes
//! (`bulwark-protocol`, `bulwark-policy`, `bulwark-translog` decode and check
//! those).

pub mod account;
pub mod alerts;
pub mod checks;
pub mod cli_sign_in;
pub mod devices;
pub mod error;
pub mod fleet;
pub mod job_status;
pub mod jobs;
pub mod log;
pub mod metrics;
pub mod numbers;
pub mod operators;
pub mod passkeys;
pub mod patch_policies;
pub mod proposals;
pub mod releases;
pub mod schedules;
pub mod scripts;
pub mod setup;
pub mod shells;
pub mod signing_keys;
pub mod sla;
pub mod tenants;
pub mod trust;
pub mod vulndb;

pub use error::{ErrorBody, ErrorDetail};
