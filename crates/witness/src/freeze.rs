//! The kill switch the server cannot withhold (RFD 0006): the customer
//! gives its root-signed freeze to the witnesses too (`POST
//! /bulwark/v1/freeze`), and from `grace` after a witness holds it, the
//! witness cosigns no checkpoint of that tenant's log until it is given a
//! later root-signed unfreeze. Agents want fresh cosignatures for every
//! job, so they stop by `T + grace + W` whatever the server does.
//!
//! Pure: the request body, the trust replay (`bulwark_policy`'s
//! [`TrustHistory`], from the tenant's first root pinned when the log was
//! added) and the decision whether to cosign, with the time as an
//! argument. Storage, the clock and HTTP are the caller's.
//!
//! Request body (`text/plain`), every line ending in a newline:
//!
//! ```text
//! root <base64 of a root envelope>      (0 to 64 lines: versions 1..n, oldest first)
//! freeze <base64 of the freeze envelope>
//! ```
//!
//! the envelopes being exactly what the server's trust API hands out
//! (`GET /api/v1/tenants/{t}/trust`: `roots`, `freeze`). Roots this witness
//! already holds are skipped; roots it learns it keeps, so that a freeze
//! signed by a rotated root verifies next time with no roots given.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_policy::{
    FreezeState, FreezeStatement, Limits, Refusal as TrustRefusal, Signed, TrustHistory, TrustKind,
    TrustOutcome,
};

use crate::add_checkpoint::Refusal;

/// Where the witness takes a freeze, beside `add-checkpoint`.
pub const PATH: &str = "/bulwark/v1/freeze";

/// The grace a witness gives the server to publish a freeze itself before
/// it stops cosigning (`bulwark witness serve --freeze-grace-secs`).
pub const DEFAULT_GRACE_SECS: u64 = 300;
/// The longest grace a witness may be set to: the bound `T + grace + W`
/// is what the customer counts on.
pub const MAX_GRACE_SECS: u64 = 24 * 3600;

/// Most root envelopes a request carries, and a log's trust holds: as many
/// as the server may relay to an agent in one message.
pub fn max_roots(limits: &Limits) -> usize {
    limits.max_trust_roots
}

/// The largest request body taken: a chain an agent takes in one frame,
/// in base64 (4/3 of its size) with the line prefixes.
pub fn max_body_bytes(limits: &Limits) -> usize {
    2 * limits.max_frame_bytes
}

/// Why a freeze is not taken, with its status. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeRefusal {
    /// 400: not a request, an envelope that does not decode, too many roots.
    BadRequest(String),
    /// 403: not signed by whom it must be (the root threshold, or for a
    /// freeze one customer-held root key), roots that do not lead from the
    /// pinned one, another tenant's statement.
    Forbidden(String),
    /// 404: this witness follows no log of that tenant with a pinned root.
    UnknownLog(String),
    /// 409: a sequence not above the one this witness holds.
    Stale(String),
}

impl FreezeRefusal {
    pub fn status(&self) -> u16 {
        match self {
            FreezeRefusal::BadRequest(_) => 400,
            FreezeRefusal::Forbidden(_) => 403,
            FreezeRefusal::UnknownLog(_) => 404,
            FreezeRefusal::Stale(_) => 409,
        }
    }

    pub fn body(&self) -> String {
        match self {
            FreezeRefusal::BadRequest(m)
            | FreezeRefusal::Forbidden(m)
            | FreezeRefusal::UnknownLog(m)
            | FreezeRefusal::Stale(m) => format!("{m}\n"),
        }
    }
}

fn bad(message: impl Into<String>) -> FreezeRefusal {
    FreezeRefusal::BadRequest(message.into())
}

/// A parsed request: the root chain given (maybe empty) and the freeze or
/// unfreeze, whose statement was read (not verified) to find the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRequest {
    pub roots: Vec<Signed>,
    pub freeze: Signed,
    pub statement: FreezeStatement,
}

fn envelope(text: &str, what: &str, limits: &Limits) -> Result<Signed, FreezeRefusal> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| bad(format!("the {what} is not base64")))?;
    Signed::from_bytes(&bytes, limits).map_err(|e| bad(format!("the {what}: {e}")))
}

/// Parses a request body strictly (see the module's text).
pub fn parse_request(body: &[u8], limits: &Limits) -> Result<FreezeRequest, FreezeRefusal> {
    if body.len() > max_body_bytes(limits) {
        return Err(bad("the request is too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("the request is not UTF-8"))?;
    let lines = text
        .strip_suffix('\n')
        .ok_or_else(|| bad("the request must end with a newline"))?;
    let mut roots = Vec::new();
    let mut freeze = None;
    for line in lines.split('\n') {
        if freeze.is_some() {
            return Err(bad("the freeze line must be the last"));
        }
        if let Some(root) = line.strip_prefix("root ") {
            if roots.len() == max_roots(limits) {
                return Err(bad(format!("more than {} roots", max_roots(limits))));
            }
            roots.push(envelope(
                root,
                &format!("root {}", roots.len() + 1),
                limits,
            )?);
        } else if let Some(text) = line.strip_prefix("freeze ") {
            freeze = Some(envelope(text, "freeze statement", limits)?);
        } else {
            return Err(bad("each line is `root <base64>` or `freeze <base64>`"));
        }
    }
    let freeze = freeze.ok_or_else(|| bad("no `freeze <base64>` line"))?;
    let statement = freeze
        .statement::<FreezeStatement>(limits)
        .map_err(|e| bad(format!("the freeze statement: {e}")))?;
    Ok(FreezeRequest {
        roots,
        freeze,
        statement,
    })
}

/// The body of a request for `roots` and `freeze` (what the CLI sends).
pub fn request_body(roots: &[Signed], freeze: &Signed) -> String {
    let mut body = String::new();
    for root in roots {
        body.push_str("root ");
        body.push_str(&STANDARD.encode(root.to_bytes()));
        body.push('\n');
    }
    body.push_str("freeze ");
    body.push_str(&STANDARD.encode(freeze.to_bytes()));
    body.push('\n');
    body
}

/// The tenant of a log whose checkpoints `log_key_name` signs under
/// `origin`: what follows `<key name>/`, as an agent checks it (step 13b,
/// `bulwark_policy::log::log_origin`). `None` for an origin of another
/// shape and for the MSP-wide log.
pub fn tenant_of<'a>(origin: &'a str, log_key_name: &str) -> Option<&'a str> {
    origin
        .strip_prefix(log_key_name)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|tenant| !tenant.is_empty() && *tenant != "msp")
}

/// The freeze or unfreeze a witness holds for a log, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFreeze {
    pub signed: Signed,
    pub state: FreezeState,
    /// The witness's own clock, Unix seconds. Frozen: when it first held a
    /// freeze of the run that ends with this one (a later freeze while
    /// frozen does not move it, so it cannot postpone the stop). Unfrozen:
    /// when it took the unfreeze.
    pub since: u64,
}

/// What a witness holds of one log's tenant trust: the root chain from the
/// pinned first root, and the latest freeze statement. Everything in it
/// verified when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTrust {
    tenant: String,
    history: TrustHistory,
    roots: Vec<Signed>,
    freeze: Option<HeldFreeze>,
}

/// A freeze request taken: the trust to record (equal to the one held when
/// nothing changed, as for the same statement given again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub trust: LogTrust,
    /// The statement was held already (a retry): `since` did not move.
    pub already_held: bool,
}

impl LogTrust {
    /// Nothing learnt yet: the first root given must hash to `pinned` and
    /// name `tenant`.
    pub fn new(pinned: [u8; 32], tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            history: TrustHistory::new(pinned, Some(tenant)),
            roots: Vec::new(),
            freeze: None,
        }
    }

    /// What was recorded, replayed again from the pin (a record that does
    /// not replay is an error: the log stays stopped).
    pub fn restore(
        pinned: [u8; 32],
        tenant: &str,
        roots: Vec<Signed>,
        freeze: Option<(Signed, u64)>,
        limits: &Limits,
    ) -> Result<Self, String> {
        if roots.len() > max_roots(limits) {
            return Err(format!("more than {} roots", max_roots(limits)));
        }
        let (history, refused) = TrustHistory::replay(
            tenant,
            Some(pinned),
            &roots,
            None,
            freeze.as_ref().map(|(signed, _)| signed),
            limits,
        );
        if let Some(TrustOutcome::Refused {
            kind,
            version,
            refusal,
        }) = refused.first()
        {
            return Err(format!(
                "the recorded {} {version} does not replay from the pinned root: {refusal}",
                kind_name(*kind)
            ));
        }
        let freeze = freeze.map(|(signed, since)| HeldFreeze {
            signed,
            state: history.freeze(),
            since,
        });
        Ok(Self {
            tenant: tenant.to_owned(),
            history,
            roots,
            freeze,
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The root chain held, from version 1.
    pub fn roots(&self) -> &[Signed] {
        &self.roots
    }

    pub fn freeze(&self) -> Option<&HeldFreeze> {
        self.freeze.as_ref()
    }

    /// Takes `request` at `now` (the witness's clock, Unix seconds): its
    /// roots applied as rotations of the chain held (those held skipped),
    /// then its freeze statement. Refused as a whole: nothing of a refused
    /// request is kept.
    pub fn offer(
        &self,
        request: &FreezeRequest,
        now: u64,
        limits: &Limits,
    ) -> Result<Taken, FreezeRefusal> {
        if request.statement.tenant != self.tenant {
            return Err(FreezeRefusal::Forbidden(format!(
                "the freeze statement is for tenant {}, this log is tenant {}'s",
                request.statement.tenant, self.tenant
            )));
        }
        let mut history = self.history.clone();
        let mut roots = self.roots.clone();
        for signed in &request.roots {
            if history.holds(TrustKind::Root, signed, limits) {
                continue;
            }
            match history.apply_root(signed, limits) {
                TrustOutcome::Accepted { .. } => roots.push(signed.clone()),
                TrustOutcome::Refused {
                    version, refusal, ..
                } => {
                    return Err(refused(
                        &format!("root version {version}"),
                        refusal,
                        FreezeRefusal::Forbidden,
                    ));
                }
            }
        }
        if roots.len() > max_roots(limits) {
            return Err(bad(format!("more than {} roots", max_roots(limits))));
        }
        let already_held = history.holds(TrustKind::Freeze, &request.freeze, limits);
        if !already_held {
            match history.apply_freeze(&request.freeze, limits) {
                TrustOutcome::Accepted { .. } => {}
                TrustOutcome::Refused {
                    version,
                    refusal: TrustRefusal::NoRoot,
                    ..
                } => {
                    return Err(FreezeRefusal::Forbidden(format!(
                        "freeze sequence {version}: this witness holds no root of tenant {} yet: \
                         give the root chain from version 1",
                        self.tenant
                    )));
                }
                TrustOutcome::Refused {
                    version, refusal, ..
                } => {
                    return Err(refused(
                        &format!("freeze sequence {version}"),
                        refusal,
                        FreezeRefusal::Stale,
                    ));
                }
            }
        }
        let state = history.freeze();
        let freeze = match &self.freeze {
            Some(held) if already_held => held.clone(),
            // Frozen again while frozen: the stop is counted from the first.
            Some(held) if held.state.frozen && state.frozen => HeldFreeze {
                signed: request.freeze.clone(),
                state,
                since: held.since,
            },
            _ => HeldFreeze {
                signed: request.freeze.clone(),
                state,
                since: now,
            },
        };
        Ok(Taken {
            trust: LogTrust {
                tenant: self.tenant.clone(),
                history,
                roots,
                freeze: Some(freeze),
            },
            already_held,
        })
    }
}

fn kind_name(kind: TrustKind) -> &'static str {
    match kind {
        TrustKind::Root => "root version",
        TrustKind::Policy => "policy version",
        TrustKind::Freeze => "freeze sequence",
    }
}

/// A refusal of the trust replay as an answer: a statement that does not
/// read is 400, a rollback `rollback` (409 for a freeze sequence, 403 for
/// a root chain that does not follow), anything else 403.
fn refused(
    what: &str,
    refusal: TrustRefusal,
    rollback: fn(String) -> FreezeRefusal,
) -> FreezeRefusal {
    let message = format!("{what}: {refusal}");
    match refusal {
        TrustRefusal::Malformed(_) | TrustRefusal::TooLarge(_) => bad(message),
        TrustRefusal::Rollback { .. } => rollback(message),
        _ => FreezeRefusal::Forbidden(message),
    }
}

/// When a witness holding `freeze` stops cosigning: `since + grace`, or
/// `None` if it is not frozen.
pub fn stops_at(freeze: Option<&HeldFreeze>, grace_secs: u64) -> Option<u64> {
    freeze
        .filter(|f| f.state.frozen)
        .map(|f| f.since.saturating_add(grace_secs))
}

/// Whether a witness may cosign a checkpoint of a log whose tenant it holds
/// `freeze` for, at `now` (its clock, Unix seconds): not from `grace`
/// after it took a freeze, until an unfreeze. The refusal is 423.
pub fn may_cosign(freeze: Option<&HeldFreeze>, grace_secs: u64, now: u64) -> Result<(), Refusal> {
    match (freeze, stops_at(freeze, grace_secs)) {
        (Some(held), Some(stop)) if now >= stop => Err(Refusal::Frozen(format!(
            "the tenant's customer froze it (sequence {}, given to this witness at {}): this \
             witness cosigns none of its checkpoints from {} until a root-signed unfreeze",
            held.state.sequence,
            utc(held.since),
            utc(stop)
        ))),
        _ => Ok(()),
    }
}

/// The answer to a freeze taken, for the log `origin`, at `now`.
pub fn taken_text(origin: &str, taken: &Taken, grace_secs: u64, now: u64) -> String {
    let Some(held) = taken.trust.freeze() else {
        return format!("{origin}: nothing held\n");
    };
    let again = if taken.already_held {
        " (already held)"
    } else {
        ""
    };
    match stops_at(Some(held), grace_secs) {
        Some(stop) if stop <= now => format!(
            "{origin}: frozen, sequence {}{again}; this witness cosigns none of its checkpoints \
             since {} until a root-signed unfreeze\n",
            held.state.sequence,
            utc(stop)
        ),
        Some(stop) => format!(
            "{origin}: frozen, sequence {}{again}; this witness cosigns none of its checkpoints \
             from {} (in {} s) until a root-signed unfreeze\n",
            held.state.sequence,
            utc(stop),
            stop - now
        ),
        None => format!(
            "{origin}: unfrozen, sequence {}{again}; this witness cosigns its checkpoints again\n",
            held.state.sequence
        ),
    }
}

/// RFC 3339, UTC, with the Unix seconds.
fn utc(secs: u64) -> String {
    let text = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    match text {
        Some(text) => format!("{text} (unix {secs})"),
        None => format!("unix {secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_policy::root::root_fingerprint;
    use bulwark_policy::{Holder, PublicKey, RootKey, TrustRoot};
    use ed25519_dalek::SigningKey;

    const TENANT: &str = "6f1d0c1e-acme";
    const GRACE: u64 = 300;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn root(tenant: &str, version: u64, keys: &[&SigningKey], threshold: u32) -> TrustRoot {
        TrustRoot {
            tenant: tenant.to_owned(),
            version,
            threshold,
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, k)| RootKey {
                    key: PublicKey::Ed25519(k.verifying_key().to_bytes()),
                    holder: if i == 0 {
                        Holder::Customer
                    } else {
                        Holder::Msp
                    },
                    name: format!("root {i}"),
                })
                .collect(),
        }
    }

    fn signed<T: bulwark_policy::envelope::Statement>(
        statement: &T,
        keys: &[&SigningKey],
    ) -> Signed {
        let mut signed = Signed::new(statement);
        for k in keys {
            signed.sign(k);
        }
        signed
    }

    fn freeze(tenant: &str, sequence: u64, frozen: bool, keys: &[&SigningKey]) -> Signed {
        signed(
            &FreezeStatement {
                tenant: tenant.to_owned(),
                sequence,
                frozen,
                reason: "test".into(),
            },
            keys,
        )
    }

    fn request(roots: &[Signed], freeze: &Signed) -> FreezeRequest {
        parse_request(request_body(roots, freeze).as_bytes(), &Limits::default()).expect("parses")
    }

    /// A tenant with a 2-of-3 root (key 1 customer-held), v1 then v2 (keys 4, 5, 6).
    struct Tenant {
        v1: Signed,
        v2: Signed,
        trust: LogTrust,
    }

    fn tenant() -> Tenant {
        let v1 = signed(
            &root(TENANT, 1, &[&key(1), &key(2), &key(3)], 2),
            &[&key(1), &key(2)],
        );
        let v2 = signed(
            &root(TENANT, 2, &[&key(4), &key(5), &key(6)], 2),
            &[&key(1), &key(2), &key(4), &key(5)],
        );
        let trust = LogTrust::new(root_fingerprint(&v1), TENANT);
        Tenant { v1, v2, trust }
    }

    #[test]
    fn a_freeze_stops_cosigning_after_the_grace_until_an_unfreeze() {
        let limits = Limits::default();
        let t = tenant();
        assert_eq!(may_cosign(t.trust.freeze(), GRACE, 1000), Ok(()));
        let taken = t
            .trust
            .offer(
                &request(
                    std::slice::from_ref(&t.v1),
                    &freeze(TENANT, 1, true, &[&key(1), &key(2)]),
                ),
                1000,
                &limits,
            )
            .expect("a threshold-signed freeze");
        assert!(!taken.already_held);
        let frozen = taken.trust;
        let held = frozen.freeze();
        assert_eq!(held.map(|f| (f.since, f.state.frozen)), Some((1000, true)));
        // Within the grace it still cosigns; from the grace on, never.
        assert_eq!(may_cosign(held, GRACE, 1000), Ok(()));
        assert_eq!(may_cosign(held, GRACE, 1299), Ok(()));
        let refusal = may_cosign(held, GRACE, 1300).expect_err("frozen");
        assert_eq!(refusal.status(), 423);
        assert!(may_cosign(held, GRACE, u64::MAX).is_err());
        assert!(may_cosign(held, 0, 1000).is_err(), "no grace: at once");
        assert_eq!(may_cosign(held, u64::MAX, u64::MAX - 1), Ok(()));

        // The same freeze again (a retry) changes nothing, even later.
        let again = frozen
            .offer(
                &request(&[], &freeze(TENANT, 1, true, &[&key(1), &key(2)])),
                5000,
                &limits,
            )
            .expect("held");
        assert!(again.already_held);
        assert_eq!(again.trust, frozen);
        // Frozen again with a newer sequence: the stop does not move.
        let refrozen = frozen
            .offer(
                &request(&[], &freeze(TENANT, 2, true, &[&key(1)])),
                1200,
                &limits,
            )
            .expect("one customer root key freezes")
            .trust;
        assert_eq!(refrozen.freeze().map(|f| f.since), Some(1000));
        // An unfreeze by the root threshold lifts it at once.
        let unfrozen = refrozen
            .offer(
                &request(&[], &freeze(TENANT, 3, false, &[&key(1), &key(2)])),
                2000,
                &limits,
            )
            .expect("unfreeze")
            .trust;
        assert_eq!(may_cosign(unfrozen.freeze(), GRACE, 3000), Ok(()));
        assert!(taken_text("log/acme", &again, GRACE, 1100).contains("from "));
        // A freeze after that starts a new grace.
        let again = unfrozen
            .offer(
                &request(&[], &freeze(TENANT, 4, true, &[&key(1)])),
                4000,
                &limits,
            )
            .expect("freeze")
            .trust;
        assert_eq!(may_cosign(again.freeze(), GRACE, 4299), Ok(()));
        assert!(may_cosign(again.freeze(), GRACE, 4300).is_err());
    }

    #[test]
    fn forged_stale_and_foreign_freezes_are_refused_and_change_nothing() {
        let limits = Limits::default();
        let t = tenant();
        let roots = std::slice::from_ref(&t.v1);
        let refuse = |trust: &LogTrust, roots: &[Signed], freeze: Signed| {
            trust
                .offer(&request(roots, &freeze), 1000, &limits)
                .map(|_| ())
                .map_err(|r| r.status())
        };
        // Keys that are not the root's; one MSP root key alone; an unfreeze
        // by one customer key (only the threshold unfreezes).
        assert_eq!(
            refuse(
                &t.trust,
                roots,
                freeze(TENANT, 1, true, &[&key(7), &key(8)])
            ),
            Err(403)
        );
        assert_eq!(
            refuse(&t.trust, roots, freeze(TENANT, 1, true, &[&key(2)])),
            Err(403)
        );
        assert_eq!(
            refuse(&t.trust, roots, freeze(TENANT, 1, false, &[&key(1)])),
            Err(403)
        );
        // No root given to a witness that holds none.
        assert_eq!(
            refuse(&t.trust, &[], freeze(TENANT, 1, true, &[&key(1), &key(2)])),
            Err(403)
        );
        // Another root than the pinned one (the server's own keys).
        let forged_root = signed(&root(TENANT, 1, &[&key(7)], 1), &[&key(7)]);
        assert_eq!(
            refuse(
                &t.trust,
                std::slice::from_ref(&forged_root),
                freeze(TENANT, 1, true, &[&key(7)])
            ),
            Err(403)
        );
        // Another tenant's freeze, signed by this tenant's keys.
        assert_eq!(
            refuse(
                &t.trust,
                roots,
                freeze("other-tenant", 1, true, &[&key(1), &key(2)])
            ),
            Err(403)
        );
        // A root that skips a version.
        let v3 = signed(
            &root(TENANT, 3, &[&key(7)], 1),
            &[&key(4), &key(5), &key(7)],
        );
        assert_eq!(
            refuse(
                &t.trust,
                &[t.v1.clone(), v3],
                freeze(TENANT, 1, true, &[&key(7)])
            ),
            Err(403)
        );

        // Held: sequence 5. Older or equal sequences are 409.
        let frozen = t
            .trust
            .offer(
                &request(roots, &freeze(TENANT, 5, true, &[&key(1), &key(2)])),
                1000,
                &limits,
            )
            .expect("freeze")
            .trust;
        assert_eq!(
            refuse(&frozen, &[], freeze(TENANT, 4, false, &[&key(1), &key(2)])),
            Err(409)
        );
        assert_eq!(
            refuse(&frozen, &[], freeze(TENANT, 5, false, &[&key(1), &key(2)])),
            Err(409)
        );
        // A forged unfreeze with a later sequence.
        assert_eq!(
            refuse(&frozen, &[], freeze(TENANT, 6, false, &[&key(7), &key(8)])),
            Err(403)
        );
        assert!(may_cosign(frozen.freeze(), GRACE, 1300).is_err());
    }

    #[test]
    fn roots_learnt_are_kept_and_survive_a_restore() {
        let limits = Limits::default();
        let t = tenant();
        // A freeze signed by the rotated root, with the chain.
        let taken = t
            .trust
            .offer(
                &request(
                    &[t.v1.clone(), t.v2.clone()],
                    &freeze(TENANT, 1, true, &[&key(4), &key(5)]),
                ),
                1000,
                &limits,
            )
            .expect("freeze by root v2")
            .trust;
        assert_eq!(taken.roots().len(), 2);
        // The old root's keys no longer sign an unfreeze.
        assert_eq!(
            taken
                .offer(
                    &request(&[], &freeze(TENANT, 2, false, &[&key(1), &key(2)])),
                    1100,
                    &limits
                )
                .map_err(|r| r.status()),
            Err(403)
        );
        // Restored from its record: the same, and v2's keys unfreeze with no roots given.
        let held = taken.freeze().expect("held");
        let restored = LogTrust::restore(
            root_fingerprint(&t.v1),
            TENANT,
            taken.roots().to_vec(),
            Some((held.signed.clone(), held.since)),
            &limits,
        )
        .expect("restores");
        assert_eq!(restored, taken);
        let unfrozen = restored
            .offer(
                &request(&[], &freeze(TENANT, 2, false, &[&key(4), &key(6)])),
                1100,
                &limits,
            )
            .expect("unfreeze by root v2");
        assert_eq!(may_cosign(unfrozen.trust.freeze(), 0, 5000), Ok(()));
        // A record that does not replay from the pin is an error.
        assert!(
            LogTrust::restore(
                root_fingerprint(&t.v2),
                TENANT,
                taken.roots().to_vec(),
                None,
                &limits
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let limits = Limits::default();
        let t = tenant();
        let f = freeze(TENANT, 1, true, &[&key(1), &key(2)]);
        let good = request_body(std::slice::from_ref(&t.v1), &f);
        assert!(parse_request(good.as_bytes(), &limits).is_ok());
        let freeze_line = good.lines().last().expect("line").to_owned();
        for body in [
            String::new(),
            "\n".to_owned(),
            good.trim_end().to_owned(),
            format!("{freeze_line}\n{freeze_line}\n"),
            format!("{freeze_line}\nroot AAAA\n"),
            "root AAAA\n".to_owned(),
            "freeze !!!\n".to_owned(),
            format!("unfreeze {}\n", &freeze_line[7..]),
            // A root envelope where the freeze goes.
            request_body(&[], &t.v1),
        ] {
            assert_eq!(
                parse_request(body.as_bytes(), &limits).map_err(|r| r.status()),
                Err(400),
                "{body:?}"
            );
        }
        let too_many = vec![t.v1.clone(); max_roots(&limits) + 1];
        assert!(parse_request(request_body(&too_many, &f).as_bytes(), &limits).is_err());
        assert!(parse_request(&vec![b'a'; max_body_bytes(&limits) + 1], &limits).is_err());
        // A freeze statement on a root line reads, but does not replay.
        let swapped = request(std::slice::from_ref(&f), &f);
        assert_eq!(
            t.trust
                .offer(&swapped, 1000, &limits)
                .map_err(|r| r.status()),
            Err(400)
        );
    }

    #[test]
    fn the_tenant_is_what_follows_the_log_key_name() {
        assert_eq!(
            tenant_of("bulwark.example.com/0f7c-2a8e", "bulwark.example.com"),
            Some("0f7c-2a8e")
        );
        assert_eq!(
            tenant_of("bulwark.example.com/msp", "bulwark.example.com"),
            None
        );
        assert_eq!(
            tenant_of("bulwark.example.com/", "bulwark.example.com"),
            None
        );
        assert_eq!(tenant_of("other.example/acme", "bulwark.example.com"), None);
        assert_eq!(
            tenant_of("bulwark.example.comx/acme", "bulwark.example.com"),
            None
        );
    }
}
