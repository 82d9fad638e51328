//! Metrics history, the pure part (RFD 0014): which values are samples,
//! the tiers and their retention, rolling buckets up, and what a
//! compaction pass deletes to keep a device under its cap. No I/O, no
//! clock: `now` is an argument. `Store::compact_metrics` is the edge.

use std::collections::BTreeMap;

use crate::Millis;

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;

/// Raw samples: one per metric per 10 s at most (the bucket of the
/// server's clock; a second sample in the same 10 s is dropped), so an
/// agent that floods reports stores no more than one that does not.
pub const RAW_SPACING_MS: Millis = 10_000;

/// The three tiers: (bucket width, how long a bucket is kept). Raw for
/// 48 h (a 1-hour window of yesterday at full resolution), 15-minute
/// average and maximum for 31 days (the 24 h, 7 d and 30 d charts), UTC
/// days for 400 days (a year's trend at 400 rows per metric).
pub const TIERS: [(Millis, Millis); 3] = [
    (RAW_SPACING_MS, 48 * HOUR),
    (15 * MINUTE, 31 * DAY),
    (DAY, 400 * DAY),
];

/// Most metrics charted per device: the first numeric checks of the policy.
pub const MAX_METRICS_PER_DEVICE: usize = 32;

/// Most rows one device may hold after a compaction pass. Five metrics
/// reported every minute need about 5 × (2,880 + 2,976 + 400) = 31,280.
pub const MAX_ROWS_PER_DEVICE: u64 = 50_000;

/// What a check kind's values are, for the charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Cpu,
    Memory,
    Disk,
    /// One-minute load per core, in hundredths.
    Load,
    /// TCP connect latency, ms.
    Latency,
}

impl MetricKind {
    /// The kind of a policy probe (`Probe::kind`), if its values chart.
    pub fn of_probe(kind: &str) -> Option<Self> {
        Some(match kind {
            "cpu" => MetricKind::Cpu,
            "memory" => MetricKind::Memory,
            "disk" => MetricKind::Disk,
            "load" => MetricKind::Load,
            "tcp-port" => MetricKind::Latency,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Cpu => "cpu",
            MetricKind::Memory => "memory",
            MetricKind::Disk => "disk",
            MetricKind::Load => "load",
            MetricKind::Latency => "latency",
        }
    }

    /// The largest value a sample of this kind can honestly have: percent
    /// kinds 100, load 1,000 per core (in hundredths), latency the longest
    /// check timeout (300 s).
    pub fn max_value(self) -> u64 {
        match self {
            MetricKind::Cpu | MetricKind::Memory | MetricKind::Disk => 100,
            MetricKind::Load => 100_000,
            MetricKind::Latency => 300_000,
        }
    }
}

/// A reported value as a sample, or `None` (not stored) when no honest
/// agent could have measured it. The wire carries unsigned integers, so
/// NaN, infinities and negatives cannot arrive; what can is bounded here.
pub fn accept(kind: MetricKind, value: u64) -> Option<i64> {
    if value > kind.max_value() {
        return None;
    }
    i64::try_from(value).ok()
}

/// The raw bucket a sample received at server time `now` goes to.
pub fn raw_slot(now: Millis) -> Millis {
    now - now.rem_euclid(RAW_SPACING_MS)
}

/// One stored row's figures: `n` samples, their sum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub n: i64,
    pub sum: i64,
    pub max: i64,
}

impl Bucket {
    pub fn sample(value: i64) -> Self {
        Bucket {
            n: 1,
            sum: value,
            max: value,
        }
    }

    /// Both buckets' samples together.
    pub fn merge(self, other: Bucket) -> Bucket {
        Bucket {
            n: self.n.saturating_add(other.n),
            sum: self.sum.saturating_add(other.sum),
            max: self.max.max(other.max),
        }
    }

    /// The average, rounded down.
    pub fn avg(self) -> i64 {
        self.sum.checked_div(self.n).unwrap_or(0)
    }
}

/// Rows `(metric, at, bucket)` of one tier as buckets of `width` ms (UTC
/// aligned): every input row lands in the bucket holding its start, so
/// counts, sums and maxima are preserved.
pub fn roll_up(
    rows: &[(String, Millis, Bucket)],
    width: Millis,
) -> BTreeMap<(String, Millis), Bucket> {
    let mut out: BTreeMap<(String, Millis), Bucket> = BTreeMap::new();
    for (metric, at, bucket) in rows {
        let start = at - at.rem_euclid(width);
        out.entry((metric.clone(), start))
            .and_modify(|b| *b = b.merge(*bucket))
            .or_insert(*bucket);
    }
    out
}

/// One step of a compaction pass, for every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Roll rows of tier `from` older than `before` into tier `from + 1`
    /// and delete them. `before` is aligned to the target's width, so each
    /// target bucket is rolled whole, once.
    RollUp {
        from: usize,
        before: Millis,
        width: Millis,
    },
    /// Delete rows of the last tier older than `before`.
    Expire { tier: usize, before: Millis },
}

/// The steps of a compaction pass at `now`.
pub fn plan(now: Millis) -> Vec<Step> {
    let mut steps = Vec::new();
    for from in 0..TIERS.len() - 1 {
        let width = TIERS[from + 1].0;
        let edge = now - TIERS[from].1;
        steps.push(Step::RollUp {
            from,
            before: edge - edge.rem_euclid(width),
            width,
        });
    }
    let last = TIERS.len() - 1;
    steps.push(Step::Expire {
        tier: last,
        before: now - TIERS[last].1,
    });
    steps
}

/// How many of its oldest rows per tier a device holding `counts` (rows
/// per tier) must lose to hold at most `cap`: the finest tier first (where
/// a flood lands, and what is cheapest to lose), then the next.
pub fn over_cap(counts: [u64; 3], cap: u64) -> [u64; 3] {
    let mut excess = counts.iter().sum::<u64>().saturating_sub(cap);
    let mut delete = [0; 3];
    for (tier, count) in counts.iter().enumerate() {
        let d = excess.min(*count);
        delete[tier] = d;
        excess -= d;
    }
    delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn total(rows: &BTreeMap<(String, Millis), Bucket>) -> (i64, i64, i64) {
        rows.values()
            .fold((0, 0, 0), |(n, s, m), b| (n + b.n, s + b.sum, m.max(b.max)))
    }

    #[test]
    fn the_plan_rolls_complete_buckets_and_expires_the_last_tier() {
        let now = 1_800_000_123_456;
        let steps = plan(now);
        assert_eq!(steps.len(), 3);
        let Step::RollUp {
            from: 0,
            before,
            width,
        } = steps[0]
        else {
            panic!("{steps:?}");
        };
        assert_eq!(width, 15 * MINUTE);
        assert_eq!(before % width, 0);
        assert!(before <= now - 48 * HOUR && before > now - 48 * HOUR - width);
        assert!(
            matches!(steps[1], Step::RollUp { from: 1, width: DAY, before } if before % DAY == 0)
        );
        assert_eq!(
            steps[2],
            Step::Expire {
                tier: 2,
                before: now - 400 * DAY
            }
        );
    }

    #[test]
    fn absurd_values_are_not_samples() {
        assert_eq!(accept(MetricKind::Cpu, 100), Some(100));
        assert_eq!(accept(MetricKind::Cpu, 101), None);
        assert_eq!(accept(MetricKind::Disk, u64::MAX), None);
        assert_eq!(accept(MetricKind::Latency, 300_000), Some(300_000));
        assert_eq!(accept(MetricKind::Latency, 1 << 63), None);
        assert_eq!(accept(MetricKind::Load, 0), Some(0));
        assert_eq!(raw_slot(1_800_000_019_999), 1_800_000_010_000);
    }

    proptest! {
        /// Rolling raw rows to 15 minutes and those to days gives what
        /// rolling them to days at once gives, and keeps every count, sum
        /// and maximum.
        #[test]
        fn roll_ups_preserve_averages_and_maxima(
            samples in prop::collection::vec((0usize..3, 0i64..40 * DAY, 0i64..=100), 0..300)
        ) {
            let rows: Vec<(String, Millis, Bucket)> = samples
                .iter()
                .map(|(m, at, v)| (format!("m{m}"), raw_slot(*at), Bucket::sample(*v)))
                .collect();
            let quarter = roll_up(&rows, 15 * MINUTE);
            let quarter_rows: Vec<_> = quarter.iter().map(|((m, at), b)| (m.clone(), *at, *b)).collect();
            let daily = roll_up(&quarter_rows, DAY);
            let direct = roll_up(&rows, DAY);
            prop_assert_eq!(&daily, &direct);
            let n = rows.len() as i64;
            let sum: i64 = rows.iter().map(|r| r.2.sum).sum();
            let max = rows.iter().map(|r| r.2.max).max().unwrap_or(0);
            prop_assert_eq!(total(&quarter), (n, sum, max));
            prop_assert_eq!(total(&daily), (n, sum, max));
            for ((metric, at), b) in &daily {
                prop_assert_eq!(at % DAY, 0);
                let mine: Vec<_> = rows.iter().filter(|r| &r.0 == metric && r.1 - r.1.rem_euclid(DAY) == *at).collect();
                prop_assert_eq!(b.n, mine.len() as i64);
                prop_assert_eq!(b.max, mine.iter().map(|r| r.2.max).max().unwrap_or(0));
                // The average of the day is the average of its samples.
                prop_assert_eq!(b.avg(), mine.iter().map(|r| r.2.sum).sum::<i64>() / mine.len() as i64);
            }
        }

        /// A device over its cap loses exactly its excess, finest tier first.
        #[test]
        fn the_cap_is_never_exceeded(counts in prop::array::uniform3(0u64..200_000), cap in 0u64..100_000) {
            let delete = over_cap(counts, cap);
            let left: u64 = counts.iter().zip(delete).map(|(c, d)| c - d).sum();
            prop_assert!(left <= cap);
            prop_assert_eq!(left, counts.iter().sum::<u64>().min(cap));
            for tier in 1..3 {
                if delete[tier] > 0 {
                    prop_assert_eq!(delete[tier - 1], counts[tier - 1]);
                }
            }
        }

        /// A device's rows under a random flood, compacted now and then by
        /// the plan, stay under the cap after every pass, and every sample
        /// not expired or capped away is still counted once.
        #[test]
        fn compaction_keeps_devices_under_the_cap(
            arrivals in prop::collection::vec((1i64..6 * HOUR, 0usize..4, 0i64..=100), 1..200),
            cap in 50u64..400,
        ) {
            let mut tiers: [BTreeMap<(String, Millis), Bucket>; 3] = Default::default();
            let mut now = 1_800_000_000_000;
            let mut dropped = 0i64;
            let mut kept_in = 0i64;
            for (step, metric, value) in arrivals {
                now += step * 20; // up to 120 h between samples: tiers move
                let key = (format!("m{metric}"), raw_slot(now));
                if tiers[0].contains_key(&key) { continue; }
                tiers[0].insert(key, Bucket::sample(value));
                kept_in += 1;
                for s in plan(now) {
                    match s {
                        Step::RollUp { from, before, width } => {
                            let old: Vec<_> = tiers[from].iter().filter(|((_, at), _)| *at < before)
                                .map(|((m, at), b)| (m.clone(), *at, *b)).collect();
                            for (m, at, _) in &old { tiers[from].remove(&(m.clone(), *at)); }
                            for (k, b) in roll_up(&old, width) {
                                let merged = tiers[from + 1].get(&k).map_or(b, |x| x.merge(b));
                                tiers[from + 1].insert(k, merged);
                            }
                        }
                        Step::Expire { tier, before } => {
                            let old: Vec<_> = tiers[tier].iter().filter(|((_, at), _)| *at < before).map(|(k, b)| (k.clone(), *b)).collect();
                            for (k, b) in old { tiers[tier].remove(&k); dropped += b.n; }
                        }
                    }
                }
                let counts = [tiers[0].len() as u64, tiers[1].len() as u64, tiers[2].len() as u64];
                let delete = over_cap(counts, cap);
                for (tier, d) in delete.iter().enumerate() {
                    let mut by_age: Vec<_> = tiers[tier].iter().map(|((m, at), b)| (*at, m.clone(), *b)).collect();
                    by_age.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                    for (at, m, b) in by_age.into_iter().take(*d as usize) {
                        tiers[tier].remove(&(m, at));
                        dropped += b.n;
                    }
                }
                prop_assert!(tiers.iter().map(|t| t.len() as u64).sum::<u64>() <= cap);
                let n: i64 = tiers.iter().flat_map(|t| t.values()).map(|b| b.n).sum();
                prop_assert_eq!(n + dropped, kept_in);
            }
        }
    }
}
