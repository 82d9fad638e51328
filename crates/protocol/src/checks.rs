//! Check results (RFD 0009): what an agent reports about the checks of the
//! policy it verified.
//!
//! The agent sends every check's state on connect (`full`) and afterwards
//! only the checks whose reported state or value changed; the server
//! acknowledges each report with `Ack { seq }` and the agent sends a report
//! again (as a full one) until it is acknowledged. States are the agent's:
//! it applies the policy's thresholds and "for N seconds" itself, so the
//! server cannot change what counts as critical.

use minicbor::{Decode, Encode};

use crate::ProtocolError;
use crate::limits::{Limits, check_len};

/// Most checks in one report (a policy defines at most 256).
pub const MAX_CHECKS_PER_REPORT: usize = 256;

/// A check's state, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum CheckState {
    #[n(0)]
    Ok,
    /// The probe could not measure (not there, no permission, timed out).
    #[n(1)]
    Unknown,
    #[n(2)]
    Warning,
    #[n(3)]
    Critical,
}

impl CheckState {
    pub const ALL: [CheckState; 4] = [
        CheckState::Ok,
        CheckState::Unknown,
        CheckState::Warning,
        CheckState::Critical,
    ];

    /// The name in storage, the API and the console.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Ok => "ok",
            CheckState::Unknown => "unknown",
            CheckState::Warning => "warning",
            CheckState::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<CheckState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One check's reported state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CheckStatus {
    /// The check's name in the policy.
    #[n(0)]
    pub name: String,
    /// The state after "for N seconds": what the agent stands by.
    #[n(1)]
    pub state: CheckState,
    /// The last measured value in the probe's unit; none when it failed.
    #[n(2)]
    pub value: Option<u64>,
    /// What was seen, for people: "91% used", "connection refused".
    #[n(3)]
    pub summary: String,
    /// Agent time (Unix seconds) the reported state began.
    #[n(4)]
    pub since: u64,
    /// Agent time of the last measurement.
    #[n(5)]
    pub measured_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CheckReport {
    #[n(0)]
    pub seq: u64,
    /// Every check of the policy (the server forgets checks not listed).
    #[n(1)]
    pub full: bool,
    /// The version of the verified policy whose checks these are.
    #[n(2)]
    pub policy_version: u64,
    #[n(3)]
    pub checks: Vec<CheckStatus>,
}

impl CheckReport {
    pub(crate) fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        check_len("checks", self.checks.len(), MAX_CHECKS_PER_REPORT)?;
        for check in &self.checks {
            l.text("check.name", &check.name)?;
            l.text("check.summary", &check.summary)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::AgentMessage;
    use crate::{PROTOCOL_VERSION, decode_agent_frame};

    fn encode_agent_frame(message: &AgentMessage) -> Vec<u8> {
        crate::encode_agent_frame(PROTOCOL_VERSION, message).expect("encodes")
    }

    fn status(name: &str, summary: &str) -> CheckStatus {
        CheckStatus {
            name: name.into(),
            state: CheckState::Critical,
            value: Some(91),
            summary: summary.into(),
            since: 1,
            measured_at: 2,
        }
    }

    fn report(checks: Vec<CheckStatus>) -> AgentMessage {
        AgentMessage::Checks(CheckReport {
            seq: 1,
            full: true,
            policy_version: 3,
            checks,
        })
    }

    #[test]
    fn a_report_within_limits_round_trips() {
        let message = report(vec![status("disk-root", "91% used")]);
        let frame = encode_agent_frame(&message);
        assert_eq!(
            decode_agent_frame(&frame, &Limits::default())
                .expect("decodes")
                .message,
            message
        );
    }

    #[test]
    fn oversized_reports_are_refused() {
        let limits = Limits::default();
        let too_many = report(vec![status("c", "s"); MAX_CHECKS_PER_REPORT + 1]);
        assert!(matches!(
            decode_agent_frame(&encode_agent_frame(&too_many), &limits),
            Err(ProtocolError::FieldTooLarge {
                field: "checks",
                ..
            })
        ));
        let long = report(vec![status("c", &"x".repeat(limits.max_text + 1))]);
        assert!(matches!(
            decode_agent_frame(&encode_agent_frame(&long), &limits),
            Err(ProtocolError::FieldTooLarge {
                field: "check.summary",
                ..
            })
        ));
    }
}
