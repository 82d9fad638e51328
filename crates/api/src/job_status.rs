//! What happened to a job, per device and as a whole (issue 15, RFD 0012):
//! the one function each, called by the server for every view (API, CLI,
//! console) so that no two screens can disagree. Pure: stored states in,
//! a status out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// Not sent yet; the device is connected (or its presence is unknown).
    Queued,
    /// Not sent yet: the device is offline. It goes when the device connects.
    WaitingOffline,
    /// Sent; the agent has not said it started (it may be verifying or
    /// queued behind another job, or too old to say: protocol before 3).
    Delivered,
    /// The agent said the script started, and has not reported an end.
    Running,
    /// Ran and exited 0.
    Succeeded,
    /// Ran and exited otherwise, or was killed by a signal.
    Failed,
    /// Ran and was killed at the signed timeout.
    TimedOut,
    /// The agent refused it (the reason is beside it).
    Refused,
    /// Cancelled: never sent, answered `cancelled` before it started, or
    /// killed by the agent on the cancel.
    Cancelled,
    /// The job expired before this device took it.
    Expired,
}

impl TargetStatus {
    /// The device is done with the job: nothing more will change.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TargetStatus::Queued
                | TargetStatus::WaitingOffline
                | TargetStatus::Delivered
                | TargetStatus::Running
        )
    }

    /// The snake_case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Queued => "queued",
            TargetStatus::WaitingOffline => "waiting_offline",
            TargetStatus::Delivered => "delivered",
            TargetStatus::Running => "running",
            TargetStatus::Succeeded => "succeeded",
            TargetStatus::Failed => "failed",
            TargetStatus::TimedOut => "timed_out",
            TargetStatus::Refused => "refused",
            TargetStatus::Cancelled => "cancelled",
            TargetStatus::Expired => "expired",
        }
    }

    /// Words for people: "waiting: device offline" rather than a code.
    pub fn label(self) -> &'static str {
        match self {
            TargetStatus::Queued => "queued",
            TargetStatus::WaitingOffline => "waiting: device offline",
            TargetStatus::Delivered => "delivered",
            TargetStatus::Running => "running",
            TargetStatus::Succeeded => "succeeded",
            TargetStatus::Failed => "failed",
            TargetStatus::TimedOut => "timed out",
            TargetStatus::Refused => "refused",
            TargetStatus::Cancelled => "cancelled",
            TargetStatus::Expired => "expired",
        }
    }
}

/// What happened to a job as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for signatures.
    Pending,
    Rejected,
    /// Expired before any device took it.
    Expired,
    /// Approved, and some device has not finished.
    Running,
    /// Every device succeeded.
    Done,
    /// No device succeeded.
    Failed,
    /// Some devices succeeded, some did not.
    Partial,
    /// An operator cancelled it, and no device still runs it.
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Rejected => "rejected",
            JobStatus::Expired => "expired",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Partial => "partial",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Nothing about the job will change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

/// The stored facts about one device's part in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFacts<'a> {
    /// The stored target state: waiting, delivered, succeeded, failed,
    /// timed_out or refused.
    pub state: &'a str,
    /// The job's stored state: pending, approved, rejected or expired.
    pub job_state: &'a str,
    pub job_cancelled: bool,
    pub refusal_code: Option<&'a str>,
    pub exit_code: Option<i32>,
    /// The agent said the script started.
    pub started: bool,
    /// Whether the device is connected now (`None`: not known).
    pub online: Option<bool>,
}

/// What happened on one device. A failed run of a cancelled job without
/// an exit code is the agent's kill on the cancel (a kill by anyone else
/// at that moment shows as cancelled too: the run's own record, signal and
/// output, stays beside it).
pub fn target_status(f: TargetFacts<'_>) -> TargetStatus {
    match f.state {
        "waiting" if f.job_cancelled || f.job_state == "rejected" => TargetStatus::Cancelled,
        "waiting" if f.job_state == "expired" => TargetStatus::Expired,
        "waiting" if f.online == Some(false) => TargetStatus::WaitingOffline,
        "waiting" => TargetStatus::Queued,
        "delivered" if f.started => TargetStatus::Running,
        "delivered" => TargetStatus::Delivered,
        "succeeded" => TargetStatus::Succeeded,
        "timed_out" => TargetStatus::TimedOut,
        "refused" if f.refusal_code == Some("cancelled") => TargetStatus::Cancelled,
        "refused" => TargetStatus::Refused,
        "failed" if f.job_cancelled && f.exit_code.is_none() => TargetStatus::Cancelled,
        _ => TargetStatus::Failed,
    }
}

/// What happened to the job as a whole, from its stored state, whether it
/// was cancelled, and its targets' statuses ([`target_status`]).
pub fn job_status(job_state: &str, cancelled: bool, targets: &[TargetStatus]) -> JobStatus {
    match job_state {
        "rejected" => return JobStatus::Rejected,
        "pending" if cancelled => return JobStatus::Cancelled,
        "pending" => return JobStatus::Pending,
        _ => {}
    }
    if targets.iter().any(|t| !t.is_final()) {
        return JobStatus::Running;
    }
    if cancelled {
        return JobStatus::Cancelled;
    }
    let succeeded = targets
        .iter()
        .filter(|t| **t == TargetStatus::Succeeded)
        .count();
    if targets.iter().all(|t| *t == TargetStatus::Expired) {
        JobStatus::Expired
    } else if succeeded == targets.len() {
        JobStatus::Done
    } else if succeeded == 0 {
        JobStatus::Failed
    } else {
        JobStatus::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetStatus as T;

    fn facts(state: &'static str) -> TargetFacts<'static> {
        TargetFacts {
            state,
            job_state: "approved",
            job_cancelled: false,
            refusal_code: None,
            exit_code: None,
            started: false,
            online: None,
        }
    }

    #[test]
    fn each_device_says_what_happened() {
        let check =
            |f: TargetFacts<'_>, want: TargetStatus| assert_eq!(target_status(f), want, "{f:?}");
        check(facts("waiting"), T::Queued);
        check(
            TargetFacts {
                online: Some(true),
                ..facts("waiting")
            },
            T::Queued,
        );
        check(
            TargetFacts {
                online: Some(false),
                ..facts("waiting")
            },
            T::WaitingOffline,
        );
        check(
            TargetFacts {
                job_cancelled: true,
                online: Some(false),
                ..facts("waiting")
            },
            T::Cancelled,
        );
        check(
            TargetFacts {
                job_state: "expired",
                ..facts("waiting")
            },
            T::Expired,
        );
        check(facts("delivered"), T::Delivered);
        check(
            TargetFacts {
                started: true,
                ..facts("delivered")
            },
            T::Running,
        );
        // A cancel was sent; until the agent answers, it still runs.
        check(
            TargetFacts {
                started: true,
                job_cancelled: true,
                ..facts("delivered")
            },
            T::Running,
        );
        check(
            TargetFacts {
                exit_code: Some(0),
                ..facts("succeeded")
            },
            T::Succeeded,
        );
        check(
            TargetFacts {
                exit_code: Some(1),
                ..facts("failed")
            },
            T::Failed,
        );
        check(facts("failed"), T::Failed);
        check(
            TargetFacts {
                job_cancelled: true,
                ..facts("failed")
            },
            T::Cancelled,
        );
        // Exited on its own before the cancel reached it: what it did stands.
        check(
            TargetFacts {
                job_cancelled: true,
                exit_code: Some(2),
                ..facts("failed")
            },
            T::Failed,
        );
        check(
            TargetFacts {
                job_cancelled: true,
                exit_code: Some(0),
                ..facts("succeeded")
            },
            T::Succeeded,
        );
        check(facts("timed_out"), T::TimedOut);
        check(
            TargetFacts {
                refusal_code: Some("expired"),
                ..facts("refused")
            },
            T::Refused,
        );
        check(
            TargetFacts {
                refusal_code: Some("cancelled"),
                ..facts("refused")
            },
            T::Cancelled,
        );
    }

    #[test]
    fn the_job_says_done_failed_partial_running_or_cancelled() {
        let check = |state: &str, cancelled: bool, targets: &[T], want: JobStatus| {
            assert_eq!(
                job_status(state, cancelled, targets),
                want,
                "{state} {cancelled} {targets:?}"
            )
        };
        check("pending", false, &[T::Queued], JobStatus::Pending);
        check("pending", true, &[T::Cancelled], JobStatus::Cancelled);
        check("rejected", false, &[T::Cancelled], JobStatus::Rejected);
        check(
            "approved",
            false,
            &[T::Succeeded, T::Queued],
            JobStatus::Running,
        );
        check("approved", false, &[T::WaitingOffline], JobStatus::Running);
        check(
            "approved",
            false,
            &[T::Succeeded, T::Succeeded],
            JobStatus::Done,
        );
        check(
            "approved",
            false,
            &[T::Failed, T::Refused, T::TimedOut],
            JobStatus::Failed,
        );
        check(
            "approved",
            false,
            &[T::Succeeded, T::Failed],
            JobStatus::Partial,
        );
        check(
            "approved",
            true,
            &[T::Running, T::Cancelled],
            JobStatus::Running,
        );
        check(
            "approved",
            true,
            &[T::Succeeded, T::Cancelled],
            JobStatus::Cancelled,
        );
        check(
            "expired",
            false,
            &[T::Expired, T::Expired],
            JobStatus::Expired,
        );
        check(
            "expired",
            false,
            &[T::Succeeded, T::Expired],
            JobStatus::Partial,
        );
        check("expired", false, &[T::Delivered], JobStatus::Running);
    }
}
