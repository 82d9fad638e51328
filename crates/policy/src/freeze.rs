//! The kill switch: the customer stops everything without asking the MSP.
//!
//! A freeze signed by any one customer-held root key (or by the root
//! threshold) makes every agent of the tenant refuse every job. Only the
//! root threshold can unfreeze. Statements carry a sequence number that only
//! moves forward, so an old unfreeze cannot be replayed after a new freeze.

use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::limits::{Limits, cap};
use crate::root::TrustRoot;

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct FreezeStatement {
    #[n(0)]
    pub tenant: String,
    #[n(1)]
    pub sequence: u64,
    #[n(2)]
    pub frozen: bool,
    #[n(3)]
    pub reason: String,
}

impl Statement for FreezeStatement {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.freeze.v1+cbor";
}

/// What an agent remembers of the kill switch (on disk, with its policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreezeState {
    pub sequence: u64,
    pub frozen: bool,
}

impl FreezeState {
    /// The state after `signed`, if it is a valid freeze or unfreeze.
    pub fn apply(
        &self,
        root: &TrustRoot,
        signed: &Signed,
        limits: &Limits,
    ) -> Result<FreezeState, Refusal> {
        // 1. Well formed, for this tenant.
        let statement: FreezeStatement = signed.statement(limits)?;
        cap(statement.reason.len(), 4096, "reason")?;
        if statement.tenant != root.tenant {
            return Err(Refusal::WrongTenant);
        }
        // 2. Newer than anything seen: an old statement cannot be replayed.
        if statement.sequence <= self.sequence {
            return Err(Refusal::Rollback {
                what: "freeze sequence",
                accepted: self.sequence,
                offered: statement.sequence,
            });
        }
        // 3. Who may sign: any customer root key freezes; the root threshold does anything.
        let by_threshold = root.require_threshold(signed).is_ok();
        let by_customer = signed.tally(root.customer_keys()).require(1).is_ok();
        let allowed = if statement.frozen {
            by_threshold || by_customer
        } else {
            by_threshold
        };
        if !allowed {
            return Err(Refusal::RootThresholdNotMet);
        }
        Ok(FreezeState {
            sequence: statement.sequence,
            frozen: statement.frozen,
        })
    }
}
