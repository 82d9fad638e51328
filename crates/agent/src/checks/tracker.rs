//! "For N seconds": from a check's samples to the state the agent reports.
//! Pure; time is an argument.
//!
//! A state is reported once the samples have been at least that bad (or,
//! on the way back, at most that bad) without a break for the policy's
//! `for_secs`: the worst such state on the way up, the best on the way
//! down. So input that flaps around a threshold raises one alert, not
//! fifty, one good sample does not resolve it, and two changes in
//! opposite directions are never closer than `for_secs`.

use bulwark_protocol::checks::CheckState;

/// One measurement after the policy's thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub state: CheckState,
    pub value: Option<u64>,
    pub summary: String,
}

fn level(state: CheckState) -> usize {
    CheckState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    reported: CheckState,
    since: u64,
    /// Per state: since when every sample has been at least that bad.
    at_least: [Option<u64>; 4],
    /// Per state: since when every sample has been at most that bad.
    at_most: [Option<u64>; 4],
    last: Option<(Sample, u64)>,
}

impl Tracker {
    /// A check starts as ok, as of `now`: its first bad samples must hold
    /// like any others.
    pub fn new(now: u64) -> Self {
        Self {
            reported: CheckState::Ok,
            since: now,
            at_least: [None; 4],
            at_most: [None; 4],
            last: None,
        }
    }

    /// A check that reported `state` since `since` before the agent
    /// restarted: it goes on from there, so a restart neither resolves an
    /// open alert nor raises a second one.
    pub fn resume(state: CheckState, since: u64) -> Self {
        Self {
            reported: state,
            ..Self::new(since)
        }
    }

    pub fn reported(&self) -> CheckState {
        self.reported
    }

    /// When the reported state began.
    pub fn since(&self) -> u64 {
        self.since
    }

    /// The last sample and when it was taken.
    pub fn last(&self) -> Option<&(Sample, u64)> {
        self.last.as_ref()
    }

    /// Takes a sample at `now`; true when the reported state changed.
    pub fn observe(&mut self, sample: Sample, for_secs: u32, now: u64) -> bool {
        let measured = level(sample.state);
        self.last = Some((sample, now));
        for l in 0..CheckState::ALL.len() {
            self.at_least[l] = if measured >= l {
                self.at_least[l].or(Some(now))
            } else {
                None
            };
            self.at_most[l] = if measured <= l {
                self.at_most[l].or(Some(now))
            } else {
                None
            };
        }
        let held =
            |since: Option<u64>| since.is_some_and(|s| now - s.min(now) >= u64::from(for_secs));
        let reported = level(self.reported);
        let next = (reported + 1..CheckState::ALL.len())
            .rev()
            .find(|&l| held(self.at_least[l]))
            .or_else(|| (0..reported).find(|&l| held(self.at_most[l])));
        match next {
            Some(l) => {
                self.reported = CheckState::ALL[l];
                self.since = now;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample(state: CheckState) -> Sample {
        Sample {
            state,
            value: None,
            summary: String::new(),
        }
    }

    #[test]
    fn a_state_must_hold_before_it_is_reported() {
        let mut t = Tracker::new(0);
        assert!(!t.observe(sample(CheckState::Critical), 120, 0));
        assert!(!t.observe(sample(CheckState::Critical), 120, 60));
        assert!(t.observe(sample(CheckState::Critical), 120, 120));
        assert_eq!((t.reported(), t.since()), (CheckState::Critical, 120));
        // One good sample does not resolve it; two minutes of them do.
        assert!(!t.observe(sample(CheckState::Ok), 120, 180));
        assert!(!t.observe(sample(CheckState::Critical), 120, 240));
        assert!(!t.observe(sample(CheckState::Ok), 120, 300));
        assert!(t.observe(sample(CheckState::Ok), 120, 420));
        assert_eq!(t.reported(), CheckState::Ok);
    }

    #[test]
    fn a_worsening_run_reports_the_state_it_showed_throughout() {
        let mut t = Tracker::new(0);
        t.observe(sample(CheckState::Critical), 60, 0);
        assert!(t.observe(sample(CheckState::Warning), 60, 60));
        assert_eq!(t.reported(), CheckState::Warning);
        // Critical for the whole next minute: now critical.
        t.observe(sample(CheckState::Critical), 60, 70);
        assert!(t.observe(sample(CheckState::Critical), 60, 130));
        assert_eq!(t.reported(), CheckState::Critical);
    }

    #[test]
    fn zero_seconds_reports_at_once() {
        let mut t = Tracker::new(0);
        assert!(t.observe(sample(CheckState::Warning), 0, 5));
        assert!(t.observe(sample(CheckState::Ok), 0, 6));
    }

    fn state() -> impl Strategy<Value = CheckState> {
        prop::sample::select(CheckState::ALL.to_vec())
    }

    proptest! {
        /// Two changes closer than `for_secs` go the same way (warning,
        /// then critical): flapping input never alternates faster.
        #[test]
        fn opposite_changes_are_at_least_for_secs_apart(
            states in prop::collection::vec(state(), 1..200),
            interval in 1u64..120,
            for_secs in 1u32..600,
        ) {
            let mut t = Tracker::new(0);
            let mut last_change: Option<(u64, bool)> = None;
            for (i, s) in states.into_iter().enumerate() {
                let now = i as u64 * interval;
                let before = t.reported();
                if t.observe(sample(s), for_secs, now) {
                    let worse = t.reported() > before;
                    if let Some((previous, was_worse)) = last_change
                        && worse != was_worse
                    {
                        prop_assert!(now - previous >= u64::from(for_secs));
                    }
                    last_change = Some((now, worse));
                }
            }
        }

        /// A state that holds for `for_secs` is always reported.
        #[test]
        fn a_held_state_is_reported(
            before in prop::collection::vec(state(), 0..50),
            held in state(),
            interval in 1u64..120,
            for_secs in 0u32..600,
        ) {
            let mut t = Tracker::new(0);
            let mut now = 0;
            for s in before {
                t.observe(sample(s), for_secs, now);
                now += interval;
            }
            // Samples of `held` from `now` until one is `for_secs` after the first.
            let until = now + u64::from(for_secs);
            loop {
                t.observe(sample(held), for_secs, now);
                if now >= until {
                    break;
                }
                now += interval;
            }
            prop_assert_eq!(t.reported(), held);
        }

        /// Alternating good and bad samples, each shorter than `for_secs`,
        /// never change what a tracker reports.
        #[test]
        fn flapping_shorter_than_for_secs_changes_nothing(
            start_critical in any::<bool>(),
            flips in 1usize..300,
            for_secs in 2u32..600,
        ) {
            let mut t = Tracker::new(0);
            let mut now = 0;
            if start_critical {
                t.observe(sample(CheckState::Critical), 0, now);
            }
            let reported = t.reported();
            let step = u64::from(for_secs) / 2;
            for i in 0..flips {
                now += step.max(1);
                let s = if i % 2 == 0 { CheckState::Ok } else { CheckState::Critical };
                prop_assert!(!t.observe(sample(s), for_secs, now));
            }
            prop_assert_eq!(t.reported(), reported);
        }
    }
}
