//! Reconnection delays: exponential with full jitter (AWS Architecture Blog,
//! "Exponential Backoff and Jitter"), so a server restart does not bring every
//! agent back in the same second.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before reconnection attempt `attempt` (0-based), given a uniform
    /// random number in [0, 1): uniform in [base/2, min(cap, base * 2^attempt)].
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.cap);
        let floor = (self.base / 2).min(ceiling);
        floor + (ceiling - floor).mul_f64(random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_to_the_cap_and_never_below_half_the_base() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(30, 0.0), Duration::from_millis(500));
        assert!(b.delay(5, 0.5) <= Duration::from_secs(32));
    }
}
