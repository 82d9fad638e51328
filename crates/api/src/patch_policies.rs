//! Patch policies (RFD 0021): security updates installed by signed
//! schedules, a canary ring first and the rest (ring 2) after a soak time.
//! A policy is two install-patches schedules signed once on the operators'
//! machines; agents verify every run of each ring themselves. Everything
//! here is the server's word for people, ring states included: the server
//! can only withhold ring 2, never widen or advance it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schedules::{ScheduleRequest, ScheduleView};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPolicyRequest {
    /// A name for people (1 to 100 characters), unique among the tenant's
    /// live policies.
    pub name: String,
    /// The canary ring's signed schedule.
    pub canary: ScheduleRequest,
    /// Ring 2's signed schedule: the same action, cron, zone and window,
    /// other devices, and a `not_before` at least `soak_secs` after the
    /// canary's (signed: agents refuse an earlier run).
    pub rest: ScheduleRequest,
    /// How long the canary must stay healthy before ring 2 runs.
    pub soak_secs: u64,
}

/// Revoke a patch policy: both rings' schedules are revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokePatchPolicyRequest {
    /// Why (1 to 1000 characters), for the audit log.
    pub reason: String,
}

/// One ring as the server sees it now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchRingView {
    /// `canary` or `ring 2`.
    pub ring: String,
    /// waiting, running, soaking, healthy, failed, released, held or revoked.
    pub state: String,
    /// Why, in words (for `held` and `failed`: which device and what it did).
    pub detail: String,
    /// The ring's signed schedule, with its last runs and their results.
    pub schedule: ScheduleView,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchPolicyView {
    /// The canary schedule's id (32 hex characters).
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// What installs, from the signed action (e.g. "install every pending
    /// security update").
    pub installs: String,
    pub soak_secs: u64,
    /// RFC 3339: the earliest ring 2 may run, from its signed `not_before`.
    pub ring_two_not_before: String,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// The canary ring, then ring 2.
    pub rings: Vec<PatchRingView>,
}
