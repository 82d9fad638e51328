//! How many agent connections this process can hold: one file descriptor
//! each, so the cap follows the open-file limit rather than a fixed number.
//!
//! At start the server raises its soft limit to the hard one (the soft
//! limit is a default for programs that never need many files; the hard
//! limit is what the administrator allows), keeps a reserve for everything
//! that is not an agent (the database pool, listeners, console and API
//! connections, SIEM and witness clients, archive files), and gives the
//! rest to agents. The arithmetic is pure; [`raise_to_hard_limit`] is the
//! one system call.

/// Agent connections allowed, and why: printed in the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCap {
    pub connections: usize,
    pub reason: String,
}

/// Descriptors kept back from agents: 5% of the limit, at least 256 (a
/// small limit still leaves the console usable) and at most 4,096.
pub fn reserve(limit: u64) -> u64 {
    (limit / 20).clamp(256, 4096)
}

/// The cap for a process whose open-file limit is `limit` (`None`:
/// unlimited), unless the configuration names one. A configured cap above
/// what the limit allows is lowered: accepting connections the process
/// cannot hold would fail them later, after TLS, with an error instead of
/// a clean refusal.
pub fn agent_cap(limit: Option<u64>, configured: Option<usize>) -> AgentCap {
    let usable = limit.map(|l| l.saturating_sub(reserve(l)));
    match (configured, usable) {
        (Some(c), Some(u)) if c as u64 > u => AgentCap {
            connections: to_usize(u),
            reason: format!(
                "max_agent_connections = {c} lowered to the open-file limit {} less {} kept for the database, console and logs",
                limit.unwrap_or_default(),
                reserve(limit.unwrap_or_default())
            ),
        },
        (Some(c), _) => AgentCap {
            connections: c,
            reason: "max_agent_connections in the configuration".to_owned(),
        },
        (None, Some(u)) => AgentCap {
            connections: to_usize(u),
            reason: format!(
                "the open-file limit {} less {} kept for the database, console and logs",
                limit.unwrap_or_default(),
                reserve(limit.unwrap_or_default())
            ),
        },
        (None, None) => AgentCap {
            connections: UNLIMITED_CAP,
            reason: "no open-file limit; capped at the default for an unlimited process".to_owned(),
        },
    }
}

/// The cap when the process has no open-file limit at all.
const UNLIMITED_CAP: usize = 1_000_000;

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Raises the soft open-file limit to the hard one; returns the limit in
/// force afterwards (`None`: unlimited). A failure leaves the soft limit
/// as it was and returns it.
pub fn raise_to_hard_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "Cannot raise the open-file limit to the hard limit.");
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_thousand_files_hold_nineteen_thousand_agents() {
        assert_eq!(agent_cap(Some(20_000), None).connections, 19_000);
    }

    #[test]
    fn a_small_limit_keeps_a_usable_reserve() {
        assert_eq!(agent_cap(Some(1024), None).connections, 768);
        assert_eq!(agent_cap(Some(100), None).connections, 0);
        assert_eq!(
            agent_cap(Some(1_048_576), None).connections,
            1_048_576 - 4096
        );
    }

    #[test]
    fn a_configured_cap_is_kept_below_the_limit_and_lowered_above_it() {
        let below = agent_cap(Some(20_000), Some(5_000));
        assert_eq!(below.connections, 5_000);
        let above = agent_cap(Some(20_000), Some(50_000));
        assert_eq!(above.connections, 19_000);
        assert!(above.reason.contains("lowered"), "{}", above.reason);
        assert_eq!(agent_cap(None, Some(7)).connections, 7);
    }

    #[test]
    fn an_unlimited_process_gets_the_default() {
        assert_eq!(agent_cap(None, None).connections, UNLIMITED_CAP);
    }
}
