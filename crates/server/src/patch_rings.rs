//! Patch policy rings (RFD 0021), pure: whether ring 2 may run, and what
//! state each ring is in, from the canary's runs and the time given.
//!
//! The server decides whether to release ring 2, and it can only withhold:
//! ring 2's own signed schedule (its action, window and a `not_before` at
//! least the soak after the canary's) is what each of its agents checks.
//! So an owned server can hold ring 2 forever or release it without a
//! healthy canary, but never earlier than signed, nor with anything else.

use bulwark_store::TargetState;

/// One canary device's result of one run, and whether it is online now
/// (back after any reboot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryResult {
    pub hostname: String,
    pub state: TargetState,
    pub exit_code: Option<i64>,
    pub refusal_code: Option<String>,
    pub online: bool,
}

/// One occurrence of the canary's schedule that was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRun {
    /// Unix seconds.
    pub occurrence: u64,
    pub results: Vec<CanaryResult>,
}

/// The release decision for one occurrence of ring 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingTwo {
    /// The canary run at this occurrence soaked and stayed healthy.
    Release { canary: u64 },
    /// Held, and why (for people).
    Hold(String),
}

/// What is wrong with a run that has not stayed healthy, if anything:
/// `Ok(true)` healthy, `Ok(false)` still running, `Err` why it failed.
fn health(run: &CanaryRun) -> Result<bool, String> {
    if run.results.is_empty() {
        return Err("the canary run has no device of the tenant".to_owned());
    }
    let mut finished = true;
    for r in &run.results {
        match r.state {
            TargetState::Succeeded if r.online => {}
            TargetState::Succeeded => {
                return Err(format!(
                    "canary {} has not come back online since its run",
                    r.hostname
                ));
            }
            TargetState::Waiting | TargetState::Delivered => finished = false,
            TargetState::Refused => {
                return Err(format!(
                    "canary {} refused the run ({})",
                    r.hostname,
                    r.refusal_code.as_deref().unwrap_or("no code")
                ));
            }
            TargetState::Failed | TargetState::TimedOut => {
                let exit = r
                    .exit_code
                    .map(|c| format!(", exit {c}"))
                    .unwrap_or_default();
                return Err(format!("canary {} {}{exit}", r.hostname, r.state));
            }
        }
    }
    Ok(finished)
}

/// Whether ring 2's occurrence `at` may be delivered: the latest canary run
/// at least `soak_secs` before `at` finished with every canary device
/// succeeded and online now. `runs` in any order.
pub fn release_ring_two(at: u64, soak_secs: u64, runs: &[CanaryRun]) -> RingTwo {
    let soaked = runs
        .iter()
        .filter(|r| r.occurrence.saturating_add(soak_secs) <= at)
        .max_by_key(|r| r.occurrence);
    let Some(run) = soaked else {
        return RingTwo::Hold(format!(
            "no canary run at least {soak_secs} s before this one"
        ));
    };
    match health(run) {
        Ok(true) => RingTwo::Release {
            canary: run.occurrence,
        },
        Ok(false) => RingTwo::Hold(format!(
            "the canary run of {} has not finished",
            run.occurrence
        )),
        Err(why) => RingTwo::Hold(why),
    }
}

/// A ring's state for people, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingState {
    pub state: &'static str,
    pub detail: String,
}

fn state(state: &'static str, detail: impl Into<String>) -> RingState {
    RingState {
        state,
        detail: detail.into(),
    }
}

/// The canary ring at `now`: from its latest run.
pub fn canary_state(now: u64, soak_secs: u64, runs: &[CanaryRun]) -> RingState {
    let Some(run) = runs.iter().max_by_key(|r| r.occurrence) else {
        return state("waiting", "no run yet");
    };
    match health(run) {
        Err(why) => state("failed", why),
        Ok(false) => state("running", format!("the run of {}", run.occurrence)),
        Ok(true) if now < run.occurrence.saturating_add(soak_secs) => state(
            "soaking",
            format!("until {}", run.occurrence.saturating_add(soak_secs)),
        ),
        Ok(true) => state("healthy", format!("the run of {}", run.occurrence)),
    }
}

/// Ring 2 at `now`: `not_before` is its signed earliest run; `running` is
/// whether a delivered run of it has targets still to answer.
pub fn ring_two_state(
    now: u64,
    not_before: u64,
    soak_secs: u64,
    runs: &[CanaryRun],
    running: bool,
) -> RingState {
    if running {
        return state("running", "");
    }
    if now < not_before {
        return state("waiting", format!("signed not before {not_before}"));
    }
    match release_ring_two(now, soak_secs, runs) {
        RingTwo::Release { canary } => {
            state("released", format!("after the canary run of {canary}"))
        }
        RingTwo::Hold(why) => state("held", why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    fn result(host: &str, state: TargetState, online: bool) -> CanaryResult {
        CanaryResult {
            hostname: host.to_owned(),
            state,
            exit_code: match state {
                TargetState::Failed => Some(100),
                _ => None,
            },
            refusal_code: (state == TargetState::Refused).then(|| "bad_signature".to_owned()),
            online,
        }
    }

    fn run(occurrence: u64, results: Vec<CanaryResult>) -> CanaryRun {
        CanaryRun {
            occurrence,
            results,
        }
    }

    fn check(at: u64, runs: &[CanaryRun], expect: RingTwo) {
        assert_eq!(release_ring_two(at, 600, runs), expect, "at {at}");
    }

    #[test]
    fn ring_two_runs_only_after_a_soaked_healthy_canary() {
        let good = run(T, vec![result("a", TargetState::Succeeded, true)]);
        check(
            T + 600,
            std::slice::from_ref(&good),
            RingTwo::Release { canary: T },
        );
        // Not soaked yet: a run 1 s short of the soak is not counted.
        check(
            T + 599,
            std::slice::from_ref(&good),
            RingTwo::Hold("no canary run at least 600 s before this one".into()),
        );
        // The latest soaked run decides, not an older good one.
        let bad = run(T + 60, vec![result("a", TargetState::Failed, true)]);
        check(
            T + 660,
            &[good.clone(), bad.clone()],
            RingTwo::Hold("canary a failed, exit 100".into()),
        );
        // A newer run still soaking does not hide the soaked one.
        check(
            T + 600,
            &[good.clone(), bad],
            RingTwo::Release { canary: T },
        );
    }

    #[test]
    fn every_canary_device_must_succeed_and_be_back_online() {
        let cases = [
            (
                TargetState::Refused,
                true,
                "canary b refused the run (bad_signature)",
            ),
            (TargetState::TimedOut, true, "canary b timed_out"),
            (
                TargetState::Succeeded,
                false,
                "canary b has not come back online since its run",
            ),
            (
                TargetState::Delivered,
                true,
                "the canary run of 1800000000 has not finished",
            ),
        ];
        for (b, online, why) in cases {
            let runs = [run(
                T,
                vec![
                    result("a", TargetState::Succeeded, true),
                    result("b", b, online),
                ],
            )];
            check(T + 600, &runs, RingTwo::Hold(why.into()));
        }
        check(
            T + 600,
            &[run(T, vec![])],
            RingTwo::Hold("the canary run has no device of the tenant".into()),
        );
    }

    #[test]
    fn states_for_people() {
        let good = [run(T, vec![result("a", TargetState::Succeeded, true)])];
        assert_eq!(canary_state(T, 600, &[]).state, "waiting");
        assert_eq!(canary_state(T + 10, 600, &good).state, "soaking");
        assert_eq!(canary_state(T + 600, 600, &good).state, "healthy");
        assert_eq!(
            ring_two_state(T + 10, T + 600, 600, &good, false).state,
            "waiting"
        );
        assert_eq!(
            ring_two_state(T + 600, T + 600, 600, &good, false).state,
            "released"
        );
        assert_eq!(
            ring_two_state(T + 600, T + 600, 600, &good, true).state,
            "running"
        );
        let bad = [run(T, vec![result("a", TargetState::Failed, true)])];
        assert_eq!(canary_state(T + 600, 600, &bad).state, "failed");
        let held = ring_two_state(T + 600, T + 600, 600, &bad, false);
        assert_eq!(
            (held.state, held.detail.as_str()),
            ("held", "canary a failed, exit 100")
        );
    }
}
