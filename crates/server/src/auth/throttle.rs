//! Login throttling and temporary lockouts: pure, I/O-free, time is an argument.
//!
//! Every login attempt is counted against two keys: the username it names
//! (`user:<name>`, whether or not the account exists, so a lockout never
//! reveals that an account exists) and the client address it comes from
//! (`addr:<ip>`; an IPv6 address counts as its /64, the block one host
//! usually holds).
//!
//! # Policy ([`ThrottlePolicy::default`])
//!
//! | key | window | growing delay | lockout |
//! |---|---|---|---|
//! | username | 15 min | after 3 failures: 1 s, 2 s, 4 s … at most 30 s between attempts | 10 failures lock it for 15 min |
//! | address | 15 min | none | 100 failures lock it for 15 min |
//!
//! - The delay is enforced by *refusing* an attempt that comes before it has
//!   elapsed since the key's last failure; nothing sleeps, so an attacker
//!   holds no server resources while waiting.
//! - Refused attempts (too early, or locked) answer exactly like a wrong
//!   password and cost no password hashing.
//! - An attempt is charged as a failure *before* its password is checked
//!   ([`begin`]), in the same transaction that read the counters: concurrent
//!   attempts see each other, so a burst cannot slip more guesses through
//!   than the policy allows. A refused attempt counts too (it was a guess).
//!   A key already locked is not charged, so a lock is never extended by the
//!   attacker who caused it.
//! - A successful login ([`succeeded`]) clears the username's counters (and
//!   any lock that its own charge set) and takes its charge back from the
//!   address.
//! - Counters older than the window start again from zero; a lock that has
//!   run out starts a fresh window.

use std::net::IpAddr;
use std::time::Duration;

pub use bulwark_store::ThrottleCounter;

/// The numbers for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Failures are counted within a window of this length from the first one.
    pub window: Duration,
    /// Failures that are free of delay; `None`: no delays for this key kind.
    pub free_failures: Option<i64>,
    /// The delay after the first failure past `free_failures`; it doubles
    /// with each further failure.
    pub base_delay: Duration,
    /// The delay never grows beyond this.
    pub max_delay: Duration,
    /// This many failures within the window lock the key...
    pub lock_after: i64,
    /// ...for this long.
    pub lock_for: Duration,
}

/// The whole throttling policy: one set of limits per key kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub user: KeyLimits,
    pub addr: KeyLimits,
}

const FIFTEEN_MINUTES: Duration = Duration::from_secs(15 * 60);

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            user: KeyLimits {
                window: FIFTEEN_MINUTES,
                free_failures: Some(3),
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(30),
                lock_after: 10,
                lock_for: FIFTEEN_MINUTES,
            },
            addr: KeyLimits {
                window: FIFTEEN_MINUTES,
                free_failures: None,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                lock_after: 100,
                lock_for: FIFTEEN_MINUTES,
            },
        }
    }
}

/// What to do with one login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Check the password.
    Allow,
    /// Refuse: too early; the key accepts another attempt after this long.
    Delay(Duration),
    /// Refuse: the key is locked until this time (unix milliseconds).
    Locked { until: i64 },
}

impl Decision {
    fn severity(self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::Delay(_) => 1,
            Decision::Locked { .. } => 2,
        }
    }
}

/// The outcome of [`begin`] for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    pub decision: Decision,
    /// The counter to store.
    pub counter: ThrottleCounter,
    /// This attempt's charge locked the key (an audit event, unless the
    /// attempt then succeeds on a username key).
    pub newly_locked: bool,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The delay a key with `failures` failures imposes between attempts.
pub fn delay_after(limits: &KeyLimits, failures: i64) -> Duration {
    let Some(free) = limits.free_failures else {
        return Duration::ZERO;
    };
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - free).unwrap_or(u32::MAX).min(30);
    limits
        .base_delay
        .saturating_mul(1u32 << doublings)
        .min(limits.max_delay)
}

/// The counter as it stands at `now`: expired windows and locks start over.
fn current(limits: &KeyLimits, counter: ThrottleCounter, now: i64) -> ThrottleCounter {
    match counter.locked_until {
        Some(until) if until > now => counter,
        Some(_) => ThrottleCounter::default(),
        None if counter.failures > 0 && now - counter.window_start < ms(limits.window) => counter,
        None => ThrottleCounter::default(),
    }
}

/// Decides one attempt against one key and charges it as a failure.
pub fn begin(limits: &KeyLimits, counter: ThrottleCounter, now: i64) -> Charged {
    let counter = current(limits, counter, now);
    if let Some(until) = counter.locked_until {
        return Charged {
            decision: Decision::Locked { until },
            counter,
            newly_locked: false,
        };
    }
    let earliest = counter.last_failure_at + ms(delay_after(limits, counter.failures));
    let decision = if counter.failures > 0 && now < earliest {
        Decision::Delay(Duration::from_millis(
            u64::try_from(earliest - now).unwrap_or_default(),
        ))
    } else {
        Decision::Allow
    };
    let mut charged = ThrottleCounter {
        failures: counter.failures + 1,
        window_start: if counter.failures == 0 {
            now
        } else {
            counter.window_start
        },
        last_failure_at: now,
        locked_until: None,
    };
    let newly_locked = charged.failures >= limits.lock_after;
    if newly_locked {
        let until = now.saturating_add(ms(limits.lock_for));
        charged.locked_until = Some(until);
        if decision != Decision::Allow {
            // Refused already; say it as it now is.
            return Charged {
                decision: Decision::Locked { until },
                counter: charged,
                newly_locked,
            };
        }
    }
    Charged {
        decision,
        counter: charged,
        newly_locked,
    }
}

/// Both keys of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The stricter of the two decisions.
    pub decision: Decision,
    pub user: Charged,
    pub addr: Charged,
}

/// Decides an attempt from the stored counters of its username and address
/// keys and charges both ([`begin`]).
pub fn attempt(
    policy: &ThrottlePolicy,
    user: ThrottleCounter,
    addr: ThrottleCounter,
    now: i64,
) -> Attempt {
    let user = begin(&policy.user, user, now);
    let addr = begin(&policy.addr, addr, now);
    let decision = if addr.decision.severity() > user.decision.severity() {
        addr.decision
    } else {
        user.decision
    };
    Attempt {
        decision,
        user,
        addr,
    }
}

/// The counters after an allowed attempt succeeded: the username starts
/// over, the address gets this attempt's charge back (and loses a lock that
/// this very charge set).
pub fn succeeded(
    policy: &ThrottlePolicy,
    addr: ThrottleCounter,
) -> (ThrottleCounter, ThrottleCounter) {
    let failures = (addr.failures - 1).max(0);
    let addr = ThrottleCounter {
        failures,
        locked_until: addr
            .locked_until
            .filter(|_| failures >= policy.addr.lock_after),
        ..addr
    };
    (ThrottleCounter::default(), addr)
}

/// Usernames longer than this cannot exist; their key is cut here.
const MAX_KEY_NAME: usize = 64;

/// The throttle key of a username (as typed: usernames are case-sensitive).
pub fn user_key(username: &str) -> String {
    let name: String = username.chars().take(MAX_KEY_NAME).collect();
    format!("user:{name}")
}

/// The throttle key of a client address: IPv4 as is, IPv6 by its /64.
pub fn addr_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => format!("addr:{v4}"),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => {
            let name: String = ip.chars().take(MAX_KEY_NAME).collect();
            format!("addr:{name}")
        }
    }
}

/// A key as the lockout API accepts it.
pub fn valid_key(key: &str) -> bool {
    (key.starts_with("user:") || key.starts_with("addr:")) && key.len() <= 5 + 4 * MAX_KEY_NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;
    const T0: i64 = 1_700_000_000_000;

    fn counter(
        failures: i64,
        window_start: i64,
        last: i64,
        locked: Option<i64>,
    ) -> ThrottleCounter {
        ThrottleCounter {
            failures,
            window_start,
            last_failure_at: last,
            locked_until: locked,
        }
    }

    /// One attempt on a username key: (stored counter, now) → (decision,
    /// stored afterwards, newly locked).
    fn check(input: (ThrottleCounter, i64), expect: (Decision, ThrottleCounter, bool)) {
        let policy = ThrottlePolicy::default();
        let got = begin(&policy.user, input.0, input.1);
        assert_eq!(
            (got.decision, got.counter, got.newly_locked),
            expect,
            "input {input:?}"
        );
    }

    #[test]
    fn first_failures_are_free() {
        let fresh = ThrottleCounter::default();
        check(
            (fresh, T0),
            (Decision::Allow, counter(1, T0, T0, None), false),
        );
        check(
            (counter(1, T0, T0, None), T0 + 1),
            (Decision::Allow, counter(2, T0, T0 + 1, None), false),
        );
        check(
            (counter(2, T0, T0, None), T0 + 1),
            (Decision::Allow, counter(3, T0, T0 + 1, None), false),
        );
    }

    #[test]
    fn delays_grow_and_are_capped() {
        // After 3 failures: 1 s; 4: 2 s; 5: 4 s; ... capped at 30 s.
        let p = ThrottlePolicy::default().user;
        let delays: Vec<u64> = (0..12).map(|f| delay_after(&p, f).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 30, 30, 30, 30]);

        // Too early: refused, and counted.
        check(
            (counter(3, T0, T0, None), T0 + 999),
            (
                Decision::Delay(Duration::from_millis(1)),
                counter(4, T0, T0 + 999, None),
                false,
            ),
        );
        // Exactly when the delay has elapsed: allowed.
        check(
            (counter(3, T0, T0, None), T0 + S),
            (Decision::Allow, counter(4, T0, T0 + S, None), false),
        );
        check(
            (counter(5, T0, T0, None), T0 + 3 * S),
            (
                Decision::Delay(Duration::from_secs(1)),
                counter(6, T0, T0 + 3 * S, None),
                false,
            ),
        );
    }

    #[test]
    fn ten_failures_lock_for_fifteen_minutes() {
        let until = T0 + 100 * S + 15 * 60 * S;
        // The tenth failure, allowed after its delay, sets the lock.
        check(
            (counter(9, T0, T0, None), T0 + 100 * S),
            (
                Decision::Allow,
                counter(10, T0, T0 + 100 * S, Some(until)),
                true,
            ),
        );
        // The tenth, refused as too early, says locked.
        check(
            (counter(9, T0, T0 + 99 * S, None), T0 + 100 * S),
            (
                Decision::Locked { until },
                counter(10, T0, T0 + 100 * S, Some(until)),
                true,
            ),
        );
        // While locked: refused, not charged, not extended.
        let locked = counter(10, T0, T0, Some(T0 + 60 * S));
        check(
            (locked, T0 + 59 * S),
            (Decision::Locked { until: T0 + 60 * S }, locked, false),
        );
        // After the lock: a fresh window.
        check(
            (locked, T0 + 60 * S),
            (
                Decision::Allow,
                counter(1, T0 + 60 * S, T0 + 60 * S, None),
                false,
            ),
        );
    }

    #[test]
    fn old_windows_start_over() {
        let window = 15 * 60 * S;
        check(
            (counter(8, T0, T0 + 10 * S, None), T0 + window),
            (
                Decision::Allow,
                counter(1, T0 + window, T0 + window, None),
                false,
            ),
        );
        check(
            (counter(2, T0, T0, None), T0 + window - 1),
            (
                Decision::Allow,
                counter(3, T0, T0 + window - 1, None),
                false,
            ),
        );
    }

    #[test]
    fn a_burst_locks_after_exactly_ten_charges() {
        // 1000 attempts within one millisecond: the username is locked by
        // the tenth charge, and only the first three were allowed.
        let policy = ThrottlePolicy::default();
        let (mut user, mut addr) = (ThrottleCounter::default(), ThrottleCounter::default());
        let mut allowed = 0;
        let mut locks = Vec::new();
        for i in 0..1000 {
            let a = attempt(&policy, user, addr, T0);
            if a.decision == Decision::Allow {
                allowed += 1;
            }
            if a.user.newly_locked {
                locks.push(("user", i));
            }
            if a.addr.newly_locked {
                locks.push(("addr", i));
            }
            (user, addr) = (a.user.counter, a.addr.counter);
        }
        assert_eq!(allowed, 3);
        assert_eq!(locks, [("user", 9), ("addr", 99)]);
        assert_eq!(user.failures, 10);
        assert_eq!(addr.failures, 100);
        assert_eq!(addr.locked_until, Some(T0 + 15 * 60 * S));
    }

    #[test]
    fn the_stricter_key_decides() {
        let policy = ThrottlePolicy::default();
        let locked_addr = counter(100, T0, T0, Some(T0 + 60 * S));
        let a = attempt(&policy, ThrottleCounter::default(), locked_addr, T0 + S);
        assert_eq!(a.decision, Decision::Locked { until: T0 + 60 * S });
        // The username is charged all the same: the attempt was a guess at it.
        assert_eq!(a.user.counter.failures, 1);

        let slow_user = counter(4, T0, T0 + S, None);
        let a = attempt(&policy, slow_user, ThrottleCounter::default(), T0 + S);
        assert_eq!(a.decision, Decision::Delay(Duration::from_secs(2)));
    }

    #[test]
    fn success_clears_the_user_and_refunds_the_address() {
        let policy = ThrottlePolicy::default();
        let (user, addr) = succeeded(&policy, counter(5, T0, T0, None));
        assert!(user.is_empty());
        assert_eq!(addr, counter(4, T0, T0, None));
        // A lock set by the successful attempt's own charge goes away...
        let (_, addr) = succeeded(&policy, counter(100, T0, T0, Some(T0 + 1)));
        assert_eq!(addr.locked_until, None);
        // ...one set by others stays.
        let (_, addr) = succeeded(&policy, counter(150, T0, T0, Some(T0 + 1)));
        assert_eq!(addr.locked_until, Some(T0 + 1));
    }

    #[test]
    fn keys() {
        assert_eq!(user_key("owner"), "user:owner");
        assert_eq!(user_key(&"x".repeat(500)).len(), 5 + 64);
        assert_eq!(addr_key("127.0.0.2"), "addr:127.0.0.2");
        assert_eq!(addr_key("::ffff:10.0.0.1"), "addr:10.0.0.1");
        assert_eq!(addr_key("2001:db8:1:2:3:4:5:6"), "addr:2001:db8:1:2::/64");
        assert_eq!(addr_key(""), "addr:");
        assert!(valid_key("user:owner") && valid_key("addr:127.0.0.1"));
        assert!(!valid_key("owner") && !valid_key(&format!("user:{}", "x".repeat(300))));
    }
}
