//! A token bucket per agent connection for what an agent may send often
//! (check reports): a misbehaving agent's flood is dropped at its own
//! connection, before storage, so other agents' reports are not delayed.
//! Pure; time (milliseconds) is an argument.

/// `burst` tokens, refilled at `per_minute`.
#[derive(Debug, Clone)]
pub struct Bucket {
    burst: f64,
    per_ms: f64,
    tokens: f64,
    at: i64,
}

impl Bucket {
    pub fn new(burst: u32, per_minute: u32, now: i64) -> Self {
        Self {
            burst: f64::from(burst),
            per_ms: f64::from(per_minute) / 60_000.0,
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: i64) -> bool {
        let elapsed = now.saturating_sub(self.at).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        self.at = now.max(self.at);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate() {
        let mut bucket = Bucket::new(20, 60, 0);
        let taken = (0..1000).filter(|_| bucket.take(0)).count();
        assert_eq!(taken, 20);
        // One a second after that.
        assert!(!bucket.take(500));
        assert!(bucket.take(1000));
        assert!(!bucket.take(1500));
        // A long silence refills to the burst, not beyond.
        let taken = (0..100).filter(|_| bucket.take(3_600_000)).count();
        assert_eq!(taken, 20);
    }

    #[test]
    fn a_clock_going_back_gives_nothing_extra() {
        let mut bucket = Bucket::new(1, 60, 10_000);
        assert!(bucket.take(10_000));
        assert!(!bucket.take(0));
        assert!(!bucket.take(10_500));
        assert!(bucket.take(11_000));
    }
}
