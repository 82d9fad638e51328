//! The tenant policy's witnesses (RFD 0006): who must have cosigned the
//! tree head that proves a job is in the log, how many of them, and how
//! recently. Step 13g of [`crate::log::decide_job`].
//!
//! A witness cosigns a checkpoint only if it extends every checkpoint of
//! that log it cosigned before, so a history the server rewrote and
//! re-signed with the log key gathers no cosignatures; and a witness given
//! the customer's freeze stops cosigning, so agents, which want fresh
//! cosignatures, stop within [`Witnessing::freshness_secs`].

use std::collections::BTreeSet;

use bulwark_translog::{CosignatureVerifier, cosignature_times};
use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::limits::{Limits, cap};

/// Most witnesses a policy lists: a note holds at most
/// `Limits::max_note_signatures` (32) lines: the log's own, and two of
/// each witness (its first cosignature of the head and its latest).
pub const MAX_WITNESSES: usize = 15;

/// How far ahead of the agent's clock a cosignature's time may be: clocks
/// of honest machines differ by seconds, not minutes.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;

/// The shortest and longest freshness window a policy may set. Shorter
/// than a minute leaves no room for clock skew and the server's re-asking;
/// longer than a day makes the freeze bound meaningless.
pub const MIN_FRESHNESS_SECS: u64 = 60;
pub const MAX_FRESHNESS_SECS: u64 = 24 * 3600;

/// One witness: its cosignature vkey (`<name>+<key id>+<base64(0x04 ||
/// key)>`, which names it) and where the server reaches its
/// `add-checkpoint` endpoint. The address is a hint to the server only:
/// agents and auditors trust the key, never the address.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct WitnessKey {
    #[n(0)]
    pub vkey: String,
    /// The URL prefix under which the witness answers `add-checkpoint`.
    #[n(1)]
    pub url: Option<String>,
}

/// The policy's witness section.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Witnessing {
    #[n(0)]
    pub witnesses: Vec<WitnessKey>,
    /// How many distinct listed witnesses must have cosigned (k of n).
    #[n(1)]
    pub threshold: u32,
    /// How old, by the agent's clock, a cosignature may be and still count.
    #[n(2)]
    pub freshness_secs: u64,
}

impl Witnessing {
    /// Well formed: 1 ≤ k ≤ n ≤ [`MAX_WITNESSES`], each vkey a valid
    /// cosignature key, no witness (name or key) twice, addresses http(s),
    /// the window within bounds.
    pub fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
        cap(self.witnesses.len(), MAX_WITNESSES, "witnesses")?;
        let malformed = |why: String| Err(Refusal::Malformed(why));
        if self.threshold == 0 || self.threshold as usize > self.witnesses.len() {
            return malformed(format!(
                "a witness threshold of {} with {} witness(es) listed",
                self.threshold,
                self.witnesses.len()
            ));
        }
        if !(MIN_FRESHNESS_SECS..=MAX_FRESHNESS_SECS).contains(&self.freshness_secs) {
            return malformed(format!(
                "a witness freshness of {} s, outside {MIN_FRESHNESS_SECS}..={MAX_FRESHNESS_SECS}",
                self.freshness_secs
            ));
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for w in &self.witnesses {
            cap(w.vkey.len(), limits.max_text, "witness key")?;
            let verifier = CosignatureVerifier::from_vkey(&w.vkey)
                .map_err(|e| Refusal::Malformed(format!("witness key {:?}: {e}", w.vkey)))?;
            if !names.insert(verifier.name().to_owned()) {
                return malformed(format!("witness {:?} is listed twice", verifier.name()));
            }
            if !keys.insert(verifier.key_bytes()) {
                return malformed("a witness key is listed twice under two names".into());
            }
            if let Some(url) = &w.url {
                cap(url.len(), limits.max_text, "witness address")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return malformed(format!("witness address {url:?} is not http(s)"));
                }
            }
        }
        Ok(())
    }

    /// The listed keys. Only for a validated section (a key that does not
    /// parse is skipped, and can then never count towards the threshold).
    pub fn verifiers(&self) -> Vec<CosignatureVerifier> {
        self.witnesses
            .iter()
            .filter_map(|w| CosignatureVerifier::from_vkey(&w.vkey).ok())
            .collect()
    }
}

/// 13g: the checkpoint `note` (the log's signature already checked) carries
/// valid cosignatures of at least `k` listed witnesses, each no older than
/// the window and at most [`MAX_CLOCK_SKEW_SECS`] ahead of `now` (the
/// agent's clock, never the server's). Returns the times that counted.
pub fn verify_witnessed(
    note: &str,
    witnessing: &Witnessing,
    now: u64,
    limits: &Limits,
) -> Result<Vec<u64>, Refusal> {
    let times = cosignature_times(note, &witnessing.verifiers(), limits).map_err(|e| {
        Refusal::LogHeadUnsigned(format!("a witness cosignature does not verify: {e}"))
    })?;
    let fresh: Vec<u64> = times
        .into_iter()
        .flatten()
        .filter(|&t| {
            t.saturating_add(witnessing.freshness_secs) >= now
                && t <= now.saturating_add(MAX_CLOCK_SKEW_SECS)
        })
        .collect();
    let need = witnessing.threshold as usize;
    if fresh.len() < need {
        return Err(Refusal::WitnessCosignaturesMissing {
            fresh: fresh.len(),
            need,
            window_secs: witnessing.freshness_secs,
        });
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use bulwark_translog::{Checkpoint, Cosigner, Hash, NoteSigner};
    use ed25519_dalek::SigningKey;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
    }

    fn note() -> (String, String) {
        let log = NoteSigner::new("log.example", SigningKey::from_bytes(&[9; 32])).expect("log");
        let note = Checkpoint::new("log.example/t1", 5, Hash([7; 32]), vec![])
            .expect("checkpoint")
            .sign(&log);
        let body = note[..note.find("\n\n").expect("body") + 1].to_owned();
        (note, body)
    }

    fn policy(witnesses: &[&Cosigner], threshold: u32) -> Witnessing {
        Witnessing {
            witnesses: witnesses
                .iter()
                .map(|c| WitnessKey {
                    vkey: c.verifier().to_vkey(),
                    url: Some("http://127.0.0.1:1".into()),
                })
                .collect(),
            threshold,
            freshness_secs: 600,
        }
    }

    #[test]
    fn k_fresh_cosignatures_of_listed_witnesses_are_needed() {
        let (a, b, c, stranger) = (
            cosigner("a", 1),
            cosigner("b", 2),
            cosigner("c", 3),
            cosigner("x", 4),
        );
        let w = policy(&[&a, &b, &c], 2);
        let limits = Limits::default();
        assert_eq!(w.validate(&limits), Ok(()));
        let (note, body) = note();
        let with = |lines: &[String]| format!("{note}{}", lines.concat());
        let line = |c: &Cosigner, t: u64| c.cosign(&body, t).expect("cosign");

        let ok = with(&[line(&a, NOW - 10), line(&c, NOW - 599)]);
        assert_eq!(
            verify_witnessed(&ok, &w, NOW, &limits),
            Ok(vec![NOW - 10, NOW - 599])
        );
        // One listed witness and a stranger: not enough.
        let short = with(&[line(&a, NOW), line(&stranger, NOW)]);
        assert!(matches!(
            verify_witnessed(&short, &w, NOW, &limits),
            Err(Refusal::WitnessCosignaturesMissing {
                fresh: 1,
                need: 2,
                ..
            })
        ));
        // One witness twice counts once.
        let twice = with(&[line(&a, NOW), line(&a, NOW - 1)]);
        assert!(verify_witnessed(&twice, &w, NOW, &limits).is_err());
        // Too old, or too far in the future, does not count.
        let stale = with(&[line(&a, NOW), line(&b, NOW - 601)]);
        assert!(verify_witnessed(&stale, &w, NOW, &limits).is_err());
        let ahead = with(&[line(&a, NOW), line(&b, NOW + MAX_CLOCK_SKEW_SECS + 1)]);
        assert!(verify_witnessed(&ahead, &w, NOW, &limits).is_err());
        // No cosignatures at all.
        assert!(verify_witnessed(&note, &w, NOW, &limits).is_err());
        // A cosignature over another tree head does not move across.
        let other = Checkpoint::new("log.example/t1", 6, Hash([8; 32]), vec![])
            .expect("checkpoint")
            .sign(&NoteSigner::new("log.example", SigningKey::from_bytes(&[9; 32])).expect("log"));
        let other_body = &other[..other.find("\n\n").expect("body") + 1];
        let moved = with(&[line(&a, NOW), b.cosign(other_body, NOW).expect("cosign")]);
        assert!(matches!(
            verify_witnessed(&moved, &w, NOW, &limits),
            Err(Refusal::LogHeadUnsigned(_))
        ));
    }

    #[test]
    fn malformed_sections_are_refused() {
        let (a, b) = (cosigner("a", 1), cosigner("b", 2));
        let limits = Limits::default();
        let bad = |w: Witnessing| assert!(w.validate(&limits).is_err(), "{w:?}");
        bad(policy(&[&a, &b], 0));
        bad(policy(&[&a, &b], 3));
        bad(policy(&[&a, &a], 1));
        // The same key under another name.
        let renamed = Cosigner::new("a2", SigningKey::from_bytes(&[1; 32])).expect("cosigner");
        bad(policy(&[&a, &renamed], 1));
        let mut w = policy(&[&a], 1);
        w.freshness_secs = 10;
        bad(w);
        let mut w = policy(&[&a], 1);
        w.witnesses[0].url = Some("file:///etc/passwd".into());
        bad(w);
        let mut w = policy(&[&a], 1);
        w.witnesses[0].vkey = "a+00000000+AAAA".into();
        bad(w);
        // Note keys (type 0x01) are not cosignature keys.
        let mut w = policy(&[&a], 1);
        w.witnesses[0].vkey = NoteSigner::new("a", SigningKey::from_bytes(&[1; 32]))
            .expect("note signer")
            .verifier()
            .to_vkey();
        bad(w);
    }
}
