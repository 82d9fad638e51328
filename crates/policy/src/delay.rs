//! Delayed mass actions (RFD 0006): a job the policy calls a mass action
//! runs only once the tenant's witnesses have seen it in the log for the
//! policy's delay, by their cosignature times and the agent's clock, never
//! the server's. In that time the customer sees it and can freeze, and a
//! freeze given to the witnesses stops it whatever the server does. Step
//! 13h of [`crate::log::decide_job`].

use bulwark_translog::cosignature_time_ranges;
use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::job::JobStatement;
use crate::limits::Limits;
use crate::policy::ActionClass;
use crate::witness::Witnessing;

/// The longest delay a policy may set.
pub const MAX_DELAY_SECS: u64 = 7 * 24 * 3600;

/// Which jobs wait, and how long.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct MassActionDelay {
    /// A job reaching more devices than this waits.
    #[n(0)]
    pub more_than_targets: Option<u32>,
    /// A job of one of these classes waits, however many devices it reaches.
    #[n(1)]
    pub classes: Vec<ActionClass>,
    #[n(2)]
    pub delay_secs: u64,
}

impl MassActionDelay {
    /// Well formed: it names some jobs, the policy has witnesses (their
    /// times measure the delay), and the delay is longer than their
    /// freshness window (so a freeze given to them in the delay stops the
    /// job: RFD 0006's bound) and at most [`MAX_DELAY_SECS`].
    pub fn validate(&self, witnessing: Option<&Witnessing>) -> Result<(), Refusal> {
        let malformed = |why: &str| Err(Refusal::Malformed(why.to_owned()));
        if self.more_than_targets.is_none() && self.classes.is_empty() {
            return malformed("a mass-action delay that names no jobs");
        }
        if self.classes.len() > ActionClass::ALL.len() {
            return Err(Refusal::TooLarge("mass-action classes"));
        }
        let Some(witnessing) = witnessing else {
            return malformed("a mass-action delay needs witnesses to measure it");
        };
        if self.delay_secs <= witnessing.freshness_secs || self.delay_secs > MAX_DELAY_SECS {
            return malformed(
                "a mass-action delay must exceed the witness freshness window and be at most 7 days",
            );
        }
        Ok(())
    }

    /// Does `job`, of the derived `class`, wait?
    pub fn applies(&self, job: &JobStatement, class: ActionClass) -> bool {
        self.classes.contains(&class)
            || self
                .more_than_targets
                .is_some_and(|n| job.targets.len() > n as usize)
    }
}

/// 13h: `since` (a checkpoint note covering the job's entry, consistent
/// with the head the job came under: the caller checks that) carries, for
/// `k` of the policy's witnesses, a cosignature at least `delay_secs`
/// before `now`.
pub fn verify_delay_elapsed(
    since: &str,
    witnessing: &Witnessing,
    rule: &MassActionDelay,
    now: u64,
    limits: &Limits,
) -> Result<(), Refusal> {
    let ranges = cosignature_time_ranges(since, &witnessing.verifiers(), limits).map_err(|e| {
        Refusal::LogHeadUnsigned(format!("a witness cosignature does not verify: {e}"))
    })?;
    let mut firsts: Vec<u64> = ranges.into_iter().flatten().map(|(f, _)| f).collect();
    firsts.sort_unstable();
    let need = witnessing.threshold as usize;
    // The k-th earliest first sighting: when k witnesses had all seen it.
    let seen_by_k = firsts.get(need.saturating_sub(1)).copied();
    match seen_by_k {
        Some(t) if t.saturating_add(rule.delay_secs) <= now => Ok(()),
        _ => Err(Refusal::MassActionDelayNotElapsed {
            delay_secs: rule.delay_secs,
            witnessed_secs: seen_by_k.map(|t| now.saturating_sub(t)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use bulwark_translog::{Checkpoint, Cosigner, Hash, NoteSigner};
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::witness::WitnessKey;

    const NOW: u64 = 1_800_000_000;

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
    }

    fn witnessing(witnesses: &[&Cosigner], threshold: u32) -> Witnessing {
        Witnessing {
            witnesses: witnesses
                .iter()
                .map(|c| WitnessKey {
                    vkey: c.verifier().to_vkey(),
                    url: None,
                })
                .collect(),
            threshold,
            freshness_secs: 300,
        }
    }

    #[test]
    fn k_witnesses_must_have_seen_it_for_the_delay() {
        let (a, b, c) = (cosigner("a", 1), cosigner("b", 2), cosigner("c", 3));
        let w = witnessing(&[&a, &b, &c], 2);
        let rule = MassActionDelay {
            more_than_targets: Some(10),
            classes: vec![],
            delay_secs: 1800,
        };
        assert_eq!(rule.validate(Some(&w)), Ok(()));
        let log = NoteSigner::new("log.example", SigningKey::from_bytes(&[9; 32])).expect("log");
        let note = Checkpoint::new("log.example/t1", 5, Hash([7; 32]), vec![])
            .expect("checkpoint")
            .sign(&log);
        let body = &note[..note.find("\n\n").expect("body") + 1];
        let with = |lines: &[(&Cosigner, u64)]| {
            let mut n = note.clone();
            for (c, t) in lines {
                n.push_str(&c.cosign(body, *t).expect("cosign"));
            }
            n
        };
        let limits = Limits::default();
        let check = |n: &str| verify_delay_elapsed(n, &w, &rule, NOW, &limits);
        // Two witnesses first saw it 30 min ago (and again now): it may run.
        let seen = with(&[(&a, NOW - 1800), (&a, NOW), (&b, NOW - 1900), (&b, NOW)]);
        assert_eq!(check(&seen), Ok(()));
        // Only one saw it that long ago: the second is the one that counts.
        let one = with(&[(&a, NOW - 5000), (&b, NOW - 60)]);
        assert_eq!(
            check(&one),
            Err(Refusal::MassActionDelayNotElapsed {
                delay_secs: 1800,
                witnessed_secs: Some(60)
            })
        );
        // Fresh cosignatures only (a server that rushed it).
        assert!(check(&with(&[(&a, NOW), (&b, NOW), (&c, NOW)])).is_err());
        assert!(check(&note).is_err());
    }

    #[test]
    fn the_rule_names_jobs_and_needs_witnesses_and_a_long_enough_delay() {
        let a = cosigner("a", 1);
        let w = witnessing(&[&a], 1);
        let rule = |n: Option<u32>, classes: Vec<ActionClass>, d: u64| MassActionDelay {
            more_than_targets: n,
            classes,
            delay_secs: d,
        };
        assert!(rule(None, vec![], 900).validate(Some(&w)).is_err());
        assert!(rule(Some(5), vec![], 900).validate(None).is_err());
        assert!(rule(Some(5), vec![], 300).validate(Some(&w)).is_err());
        assert!(
            rule(Some(5), vec![], MAX_DELAY_SECS + 1)
                .validate(Some(&w))
                .is_err()
        );
        assert!(
            rule(None, vec![ActionClass::UpdateAgent], 900)
                .validate(Some(&w))
                .is_ok()
        );
    }
}
