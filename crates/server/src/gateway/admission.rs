//! Admission of new agent connections (issue 18, the reconnect storm).
//!
//! A restarted node is met by its whole fleet at once. Accepting every
//! connection and starting every TLS handshake together shares the cores
//! among thousands of handshakes, none of which finishes before its
//! deadline: at 19,000 agents half of them were dropped half-way and came
//! back only after their backoff. So a bounded number of handshakes (TLS,
//! upgrade, authentication) run at once; a connection waits a short while
//! for its turn, and past that is closed at once, before any TLS work. The
//! agent treats that like any failed connection: it backs off with jitter
//! and comes back (`bulwark_agent::backoff`). A `Refused(Unavailable)`
//! frame would need the very TLS handshake the limit is there to avoid.
//!
//! A connection takes its turn only once its first bytes (the TLS
//! ClientHello) have arrived: silent connections hold nothing. One that
//! stalls half-way through its handshake holds its turn until the
//! handshake deadline (10 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Handshakes in flight per core, by default: enough to keep the cores
/// busy while some wait on the network or the store, few enough that each
/// finishes in milliseconds.
pub const HANDSHAKES_PER_CORE: usize = 64;

/// How long a connection waits for its turn before it is closed: well
/// inside the agent's 15-second connect timeout, so a closed connection
/// is retried after the agent's backoff rather than timing out.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(2);

/// The handshakes a node runs at once, and the connections it turned away.
pub struct Admission {
    handshakes: Arc<Semaphore>,
    wait: Duration,
    refused: AtomicU64,
}

impl Admission {
    /// `handshakes` at once (at least one); a connection waits `wait` for its turn.
    pub fn new(handshakes: usize, wait: Duration) -> Admission {
        Admission {
            handshakes: Arc::new(Semaphore::new(handshakes.max(1))),
            wait,
            refused: AtomicU64::new(0),
        }
    }

    /// The configured number of handshakes, or [`HANDSHAKES_PER_CORE`] per core.
    pub fn handshakes(configured: Option<usize>, cores: usize) -> usize {
        configured
            .unwrap_or(HANDSHAKES_PER_CORE * cores.max(1))
            .max(1)
    }

    /// A turn for one handshake, held until it ends; `None` when none came
    /// within the wait (close the connection: the agent retries later).
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.handshakes.clone().try_acquire_owned() {
            return Some(permit);
        }
        match tokio::time::timeout(self.wait, self.handshakes.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Connections closed for want of a turn since the node started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}
