//! Witness cosignatures on the heads `verify` relies on (RFD 0006, C2SP
//! `tlog-cosignature/v1`).
//!
//! The log key sits in the server's data directory: whoever owns the
//! server can rewrite a log, rebuild its tree and sign new heads that
//! verify. An auditor who saved no head cannot tell that history from the
//! real one by the log's signature alone. A witness cosigns a head only if
//! it extends every head of that log it cosigned before, so a rewritten
//! history gathers no cosignatures: `verify` requires `k` distinct listed
//! witnesses on the newest head it relies on (any time: this is history,
//! not freshness, unlike an agent's check), and refuses a head carrying a
//! cosignature line of a listed key that does not verify (altered).
//!
//! The witnesses come from `--witness VKEY` (repeatable; `k` from
//! `--witnesses-required`, default all of them), else from the witness
//! section of the tenant's policy in force at the end of the replayed log.
//! Pure: `verify` gathers the notes and calls [`check_cosignatures`].

use bulwark_policy::{Policy, Witnessing};
use bulwark_translog::{CosignatureVerifier, cosignature_times};

use super::*;

/// `code` of a head without enough cosignatures (exit
/// [`EXIT_NOT_WITNESSED`]).
pub(super) const NOT_WITNESSED: &str = "not_witnessed";
/// `code` of a head with a cosignature line of a listed key that does not
/// verify (exit [`EXIT_BAD_LOG`], like a bad log signature).
pub(super) const BAD_COSIGNATURE: &str = "bad_cosignature";

/// Where the witnesses came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WitnessSource {
    /// `--witness` on the command line.
    Flags,
    /// The witness section of the tenant's policy of this version, in force
    /// at the end of the replayed log; `pinned`: the replay started from
    /// the root this machine pinned (else from the statements' own first
    /// root, which the server chose).
    Policy { version: u64, pinned: bool },
}

impl WitnessSource {
    fn describe(&self) -> String {
        match self {
            WitnessSource::Flags => "--witness".to_owned(),
            WitnessSource::Policy {
                version,
                pinned: true,
            } => format!("the tenant's policy v{version}, replayed from the pinned root"),
            WitnessSource::Policy {
                version,
                pinned: false,
            } => format!(
                "the tenant's policy v{version}, replayed from a root NOT pinned on this \
                 machine (the server could have chosen these witnesses; pass --witness)"
            ),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            WitnessSource::Flags => json!({"kind": "flags"}),
            WitnessSource::Policy { version, pinned } => {
                json!({"kind": "policy", "policy_version": version, "root_pinned": pinned})
            }
        }
    }
}

/// Whose cosignatures count, and how many distinct ones a head needs.
#[derive(Debug, Clone)]
pub(super) struct Witnesses {
    pub(super) keys: Vec<CosignatureVerifier>,
    pub(super) required: usize,
    pub(super) source: WitnessSource,
}

/// The witnesses of `--witness VKEY …` and `--witnesses-required K`
/// (default: every witness given); `None` without `--witness`. A key that
/// does not parse, a witness (name or key) given twice, or `K` outside
/// `1..=n` is a usage error.
pub(super) fn witnesses_from_flags(
    vkeys: &[String],
    required: Option<u32>,
) -> Result<Option<Witnesses>> {
    if vkeys.is_empty() {
        ensure!(
            required.is_none(),
            "--witnesses-required needs the witnesses: --witness VKEY"
        );
        return Ok(None);
    }
    let mut keys: Vec<CosignatureVerifier> = Vec::new();
    for vkey in vkeys {
        let key = CosignatureVerifier::from_vkey(vkey.trim()).map_err(|e| {
            anyhow!(
                "--witness {:?} is not a witness key (<name>+<key id>+<base64 of 0x04 || \
                 Ed25519 key>, as `bulwark witness init` prints it): {e}",
                vkey.trim()
            )
        })?;
        ensure!(
            !keys
                .iter()
                .any(|k| k.name() == key.name() || k.key_bytes() == key.key_bytes()),
            "--witness {:?} is given twice (by name or by key): each witness counts once",
            key.name()
        );
        keys.push(key);
    }
    let n = keys.len();
    let required = match required {
        None => n,
        Some(k) => {
            let k = k as usize;
            ensure!(
                (1..=n).contains(&k),
                "--witnesses-required {k} with {n} witness(es) given: it must be 1 to {n}"
            );
            k
        }
    };
    Ok(Some(Witnesses {
        keys,
        required,
        source: WitnessSource::Flags,
    }))
}

/// The witnesses of a policy's section (validated when the policy was
/// accepted: `1 <= threshold <= n`).
pub(super) fn witnesses_from_policy(
    witnessing: &Witnessing,
    version: u64,
    pinned: bool,
) -> Witnesses {
    let keys = witnessing.verifiers();
    Witnesses {
        required: (witnessing.threshold as usize).max(1),
        keys,
        source: WitnessSource::Policy { version, pinned },
    }
}

/// The witness section of the policy `signed` (one the replay accepted),
/// if it has one.
pub(super) fn policy_witnesses(
    signed: &Signed,
    pinned: bool,
    limits: &bulwark_policy::Limits,
) -> Result<Option<Witnesses>> {
    let policy: Policy = signed
        .statement(limits)
        .map_err(|e| anyhow!("the policy in force does not decode: {e}"))?;
    Ok(policy
        .witnessing
        .as_ref()
        .map(|w| witnesses_from_policy(w, policy.version, pinned)))
}

/// One listed witness and its cosignature on the head relied on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cosigned {
    pub(super) name: String,
    pub(super) vkey: String,
    /// The cosignature's time (POSIX seconds); `None`: no cosignature.
    pub(super) at: Option<u64>,
}

/// What the witnesses said of the heads `verify` checked.
#[derive(Debug, Clone)]
pub(super) struct WitnessReport {
    pub(super) source: WitnessSource,
    pub(super) required: usize,
    /// The newest head the verification relies on.
    pub(super) head_size: u64,
    pub(super) witnesses: Vec<Cosigned>,
    /// Every distinct head size checked (each one's cosignature lines of
    /// listed keys verify), and how many of them carry `required`.
    pub(super) heads: usize,
    pub(super) heads_witnessed: usize,
}

impl WitnessReport {
    /// Distinct listed witnesses that cosigned the head relied on.
    pub(super) fn cosigned(&self) -> usize {
        self.witnesses.iter().filter(|w| w.at.is_some()).count()
    }

    pub(super) fn ok(&self) -> bool {
        self.cosigned() >= self.required
    }

    /// Each witness: `name at <UTC date>` or `name: none`.
    pub(super) fn lines(&self) -> Vec<String> {
        self.witnesses
            .iter()
            .map(|w| match w.at {
                Some(t) => format!("{} cosigned at {}", w.name, utc(t)),
                None => format!("{} did NOT cosign", w.name),
            })
            .collect()
    }

    /// Names the source, the count and who cosigned.
    pub(super) fn summary(&self) -> String {
        format!(
            "{} of {} listed witness(es) cosigned the tree head of size {} ({} required; \
             witnesses from {})",
            self.cosigned(),
            self.witnesses.len(),
            self.head_size,
            self.required,
            self.source.describe()
        )
    }

    /// Why verification fails: too few cosignatures.
    pub(super) fn shortfall(&self) -> Bad {
        let who: Vec<&str> = self
            .witnesses
            .iter()
            .filter(|w| w.at.is_some())
            .map(|w| w.name.as_str())
            .collect();
        let who = if who.is_empty() {
            "none of them".to_owned()
        } else {
            who.join(", ")
        };
        Bad::head(
            self.head_size,
            NOT_WITNESSED,
            format!(
                "the tree head of size {} is not witnessed: {} required, {} of the {} listed \
                 witness(es) cosigned it ({who}); a history the server rewrote and re-signed \
                 with its log key looks like this, since witnesses never cosign a fork",
                self.head_size,
                self.required,
                self.cosigned(),
                self.witnesses.len()
            ),
        )
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "checked": true,
            "ok": self.ok(),
            "source": self.source.to_json(),
            "required": self.required,
            "cosigned": self.cosigned(),
            "head_size": self.head_size,
            "heads_checked": self.heads,
            "heads_witnessed": self.heads_witnessed,
            "witnesses": self.witnesses.iter().map(|w| json!({
                "name": w.name,
                "vkey": w.vkey,
                "cosigned_at": w.at,
                "cosigned_at_utc": w.at.map(utc),
            })).collect::<Vec<_>>(),
        })
    }
}

/// POSIX seconds as an RFC 3339 UTC date.
pub(super) fn utc(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{seconds} (POSIX seconds, beyond the calendar)"))
}

/// Checks the witnesses' cosignatures on the signed heads `notes` (each
/// already verified with the log key): every line of a listed key on every
/// note must verify (else the head was altered: `Err`, exit 1), and the
/// report gives each witness's time on the head of size `relied` (merged
/// over every note of that size: they sign one body, since two roots for
/// one size already failed). Whether enough cosigned is
/// [`WitnessReport::ok`].
pub(super) fn check_cosignatures(
    notes: &[(u64, String)],
    witnesses: &Witnesses,
    relied: u64,
) -> Result<WitnessReport, Bad> {
    let limits = Limits::default();
    let mut by_size: std::collections::BTreeMap<u64, Vec<Option<u64>>> =
        std::collections::BTreeMap::new();
    for (size, note) in notes {
        let times = cosignature_times(note, &witnesses.keys, &limits).map_err(|e| {
            Bad::head(
                *size,
                BAD_COSIGNATURE,
                format!(
                    "the tree head of size {size} carries a witness cosignature that does not \
                     verify: {e}"
                ),
            )
        })?;
        let merged = by_size
            .entry(*size)
            .or_insert_with(|| vec![None; witnesses.keys.len()]);
        for (held, time) in merged.iter_mut().zip(times) {
            *held = (*held).max(time);
        }
    }
    let count = |times: &[Option<u64>]| times.iter().filter(|t| t.is_some()).count();
    let relied_times = by_size
        .get(&relied)
        .cloned()
        .unwrap_or_else(|| vec![None; witnesses.keys.len()]);
    Ok(WitnessReport {
        source: witnesses.source.clone(),
        required: witnesses.required,
        head_size: relied,
        witnesses: witnesses
            .keys
            .iter()
            .zip(relied_times)
            .map(|(key, at)| Cosigned {
                name: key.name().to_owned(),
                vkey: key.to_vkey(),
                at,
            })
            .collect(),
        heads: by_size.len(),
        heads_witnessed: by_size
            .values()
            .filter(|times| count(times) >= witnesses.required)
            .count(),
    })
}

/// Why no witness was checked, for the output.
pub(super) fn unchecked_reason(replayed_policy: Option<u64>, replayed: bool) -> String {
    match (replayed_policy, replayed) {
        (Some(version), _) => format!(
            "no --witness given, and the tenant's policy in force (v{version}) names no witnesses"
        ),
        (None, true) => "no --witness given, and the replayed log holds no policy".to_owned(),
        (None, false) => {
            "no --witness given, and no policy was replayed (the MSP log, an archived start, or \
             an export without statements.json)"
                .to_owned()
        }
    }
}

/// The newest size reached from `start` by verified consistency proofs
/// (`(from, to)` pairs, chained): the newest head an archive's entries are
/// tied to.
pub(super) fn proven_reach(start: u64, proofs: &[(u64, u64)]) -> u64 {
    let mut reach = start;
    loop {
        let next = proofs
            .iter()
            .filter(|(f, t)| *f == reach && *t > reach)
            .map(|(_, t)| *t)
            .max();
        match next {
            Some(t) => reach = t,
            None => return reach,
        }
    }
}

#[cfg(test)]
mod tests {
    use bulwark_translog::{Checkpoint, Cosigner, NoteSigner};
    use ed25519_dalek::SigningKey;

    use super::*;

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
    }

    fn log() -> NoteSigner {
        NoteSigner::new("log.example", SigningKey::from_bytes(&[9; 32])).expect("log")
    }

    fn note(size: u64, root: u8) -> String {
        Checkpoint::new("log.example/t1", size, Hash([root; 32]), vec![])
            .expect("checkpoint")
            .sign(&log())
    }

    fn body(note: &str) -> &str {
        &note[..note.find("\n\n").expect("body") + 1]
    }

    fn cosigned(note: &str, by: &[(&Cosigner, u64)]) -> String {
        let mut out = note.to_owned();
        for (c, t) in by {
            out.push_str(&c.cosign(body(note), *t).expect("cosign"));
        }
        out
    }

    fn flags(keys: &[&Cosigner], required: Option<u32>) -> Witnesses {
        let vkeys: Vec<String> = keys.iter().map(|c| c.verifier().to_vkey()).collect();
        witnesses_from_flags(&vkeys, required)
            .expect("flags")
            .expect("witnesses")
    }

    #[test]
    fn flags_default_to_every_witness_and_refuse_nonsense() {
        let (a, b) = (cosigner("w.example/a", 1), cosigner("w.example/b", 2));
        assert!(witnesses_from_flags(&[], None).expect("none").is_none());
        assert!(witnesses_from_flags(&[], Some(1)).is_err());
        assert_eq!(flags(&[&a, &b], None).required, 2);
        assert_eq!(flags(&[&a, &b], Some(1)).required, 1);
        let vkeys = [a.verifier().to_vkey(), b.verifier().to_vkey()];
        assert!(witnesses_from_flags(&vkeys, Some(0)).is_err());
        assert!(witnesses_from_flags(&vkeys, Some(3)).is_err());
        // Twice by name, twice by key (another name), and not a witness key
        // (the log's own vkey is a note key, type 0x01).
        assert!(witnesses_from_flags(&[vkeys[0].clone(), vkeys[0].clone()], None).is_err());
        let same_key = cosigner("w.example/other-name", 1).verifier().to_vkey();
        assert!(witnesses_from_flags(&[vkeys[0].clone(), same_key], None).is_err());
        assert!(witnesses_from_flags(&[log().verifier().to_vkey()], None).is_err());
    }

    #[test]
    fn the_relied_on_head_needs_k_distinct_listed_witnesses_at_any_time() {
        let (a, b, c) = (
            cosigner("w.example/a", 1),
            cosigner("w.example/b", 2),
            cosigner("w.example/c", 3),
        );
        let stranger = cosigner("w.example/stranger", 4);
        let old = note(10, 1);
        // An old cosignature counts (history, not freshness).
        let new = cosigned(&note(20, 2), &[(&a, 1_000), (&stranger, 2_000)]);
        let notes = vec![(10, old.clone()), (20, new.clone())];
        let two_of_three = flags(&[&a, &b, &c], Some(2));
        let report = check_cosignatures(&notes, &two_of_three, 20).expect("verifies");
        assert_eq!(report.cosigned(), 1);
        assert!(!report.ok());
        assert_eq!(
            report.witnesses.iter().map(|w| w.at).collect::<Vec<_>>(),
            vec![Some(1_000), None, None]
        );
        let bad = report.shortfall();
        assert_eq!((bad.code, bad.head_size), (NOT_WITNESSED, Some(20)));
        assert!(
            bad.message.contains("2 required, 1 of the 3") && bad.message.contains("(w.example/a)"),
            "{}",
            bad.message
        );
        assert!(
            report.lines()[0].contains("1970-01-01T00:16:40Z"),
            "{:?}",
            report.lines()
        );
        // A second copy of the same head (head.json) with another
        // witness's line: the two copies count together, once each.
        let copy = cosigned(&note(20, 2), &[(&b, 3_000), (&a, 500)]);
        let notes = vec![(10, old.clone()), (20, new.clone()), (20, copy)];
        let report = check_cosignatures(&notes, &two_of_three, 20).expect("verifies");
        assert_eq!(report.cosigned(), 2);
        assert!(report.ok());
        assert_eq!(report.witnesses[0].at, Some(1_000));
        assert_eq!((report.heads, report.heads_witnessed), (2, 1));
        // One witness cosigning twice counts once.
        let twice = cosigned(&note(20, 2), &[(&a, 1_000), (&a, 2_000)]);
        let report = check_cosignatures(&[(20, twice)], &two_of_three, 20).expect("verifies");
        assert_eq!((report.cosigned(), report.ok()), (1, false));
        // No note of the relied size at all: nobody cosigned it.
        let report = check_cosignatures(&notes, &two_of_three, 30).expect("verifies");
        assert_eq!(report.cosigned(), 0);
    }

    #[test]
    fn a_listed_witness_line_that_does_not_verify_is_an_altered_head() {
        let a = cosigner("w.example/a", 1);
        let witnesses = flags(&[&a], None);
        // The honest cosignature of another head copied onto a re-signed one.
        let honest = note(20, 2);
        let line = a.cosign(body(&honest), 1_000).expect("cosign");
        let forged = format!("{}{line}", note(20, 7));
        let bad = check_cosignatures(&[(20, forged.clone())], &witnesses, 20).expect_err("altered");
        assert_eq!((bad.code, bad.head_size), (BAD_COSIGNATURE, Some(20)));
        // On an older head too.
        let notes = vec![(10, forged.replace("\n20\n", "\n10\n")), (20, honest)];
        assert!(check_cosignatures(&notes, &witnesses, 20).is_err());
        // A stranger's bad line is not ours to judge.
        let other = flags(&[&cosigner("w.example/b", 2)], None);
        assert!(check_cosignatures(&[(20, forged)], &other, 20).is_ok());
    }

    #[test]
    fn a_policy_section_gives_its_threshold() {
        let (a, b) = (cosigner("w.example/a", 1), cosigner("w.example/b", 2));
        let section = Witnessing {
            witnesses: [&a, &b]
                .iter()
                .map(|c| bulwark_policy::WitnessKey {
                    vkey: c.verifier().to_vkey(),
                    url: None,
                })
                .collect(),
            threshold: 1,
            freshness_secs: 600,
        };
        let w = witnesses_from_policy(&section, 3, true);
        assert_eq!((w.keys.len(), w.required), (2, 1));
        assert_eq!(
            w.source,
            WitnessSource::Policy {
                version: 3,
                pinned: true
            }
        );
        let n = cosigned(&note(5, 1), &[(&b, 7)]);
        assert!(check_cosignatures(&[(5, n)], &w, 5).expect("ok").ok());
    }

    #[test]
    fn an_archive_is_witnessed_through_the_heads_its_proofs_reach() {
        assert_eq!(proven_reach(12, &[]), 12);
        assert_eq!(proven_reach(12, &[(12, 30)]), 30);
        assert_eq!(proven_reach(12, &[(5, 12), (12, 20), (20, 31)]), 31);
        // A proof from elsewhere reaches nothing from here.
        assert_eq!(proven_reach(12, &[(13, 30)]), 12);
    }
}
