//! The server as the client of its tenants' witnesses (RFD 0006).
//!
//! A tenant whose root-signed policy names witnesses gets every tree head
//! of its log submitted to each of them (C2SP tlog-witness
//! `add-checkpoint`, with a consistency proof from the size the witness
//! holds); the cosignature lines they answer are added to the stored note,
//! so whoever reads the head (agents with each job, auditors, the console)
//! gets them with it. Heads are submitted again every third of the
//! policy's freshness window, so an idle log stays acceptable to agents.
//!
//! Nothing here is trusted: agents and auditors verify every cosignature
//! against the keys of the policy the customer's root signed. A server
//! that skips this only stops its own jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_policy::{Limits, Policy, Signed, Witnessing};
use bulwark_store::{LogCheckpoint, Store};
use bulwark_translog::{CosignatureVerifier, cosignature_times};
use tokio::sync::watch;

use super::checkpoints::LogSigner;

/// How often the background task looks for heads to submit.
pub const WITNESS_TICK: Duration = Duration::from_secs(5);
/// How long one witness may take to answer.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a witness that failed is left alone, so that one that drops
/// packets does not hold every delivery up for [`WITNESS_TIMEOUT`].
const WITNESS_BACKOFF: Duration = Duration::from_secs(10);
/// The C2SP signature-line prefix.
const SIG_PREFIX: &str = "\u{2014} ";

/// Talks to witnesses; one per server.
pub struct WitnessClient {
    http: reqwest::Client,
    /// The size each witness (by vkey) holds for each log, as far as the
    /// server knows; 0 until it answers (a 409 then says the size).
    held: Mutex<HashMap<(String, String), u64>>,
    /// One submission round per log at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When each witness (by log and vkey) last failed.
    failed: Mutex<HashMap<(String, String), std::time::Instant>>,
}

impl std::fmt::Debug for WitnessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WitnessClient")
    }
}

impl WitnessClient {
    pub fn new() -> anyhow::Result<Self> {
        let http = crate::tls::https_client(
            Vec::new(),
            concat!("bulwark-server/", env!("CARGO_PKG_VERSION")),
            WITNESS_TIMEOUT,
        )
        .context("building the witness HTTP client")?;
        Ok(Self {
            http,
            held: Mutex::default(),
            locks: Mutex::default(),
            failed: Mutex::default(),
        })
    }

    fn lock_for(&self, log_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(log_id.to_owned()).or_default().clone()
    }

    /// Makes `checkpoint` carry a cosignature of every witness of
    /// `witnessing` that has an address, each no older than a third of the
    /// freshness window at `now_secs`: asks those whose cosignature is
    /// missing or older. Returns the checkpoint as stored afterwards. A
    /// witness that cannot be reached or refuses is logged and skipped
    /// (agents then refuse jobs if fewer than `k` remain).
    pub async fn witness(
        &self,
        store: &Store,
        signer: &LogSigner,
        witnessing: &Witnessing,
        checkpoint: &LogCheckpoint,
        now_secs: u64,
    ) -> anyhow::Result<LogCheckpoint> {
        let lock = self.lock_for(&checkpoint.log_id);
        let _round = lock.lock().await;
        let log_id = &checkpoint.log_id;
        let current = store
            .checkpoint_at(log_id, checkpoint.size)
            .await?
            .ok_or_else(|| anyhow!("the checkpoint of size {} vanished", checkpoint.size))?;
        let limits = Limits::default();
        let log_note = log_signed_part(&current.note, signer);
        let mut note = current.note.clone();
        let verifiers = witnessing.verifiers();
        // A stored line that does not verify is dropped and asked again.
        let times = cosignature_times(&note, &verifiers, &limits)
            .unwrap_or_else(|_| vec![None; verifiers.len()]);
        let refresh_after = witnessing.freshness_secs / 3;
        let (log_note, size) = (log_note.as_str(), current.size);
        // Every witness due is asked at once: one slow witness costs one
        // timeout, not one per witness.
        let asks = witnessing
            .witnesses
            .iter()
            .zip(&verifiers)
            .zip(times)
            .filter_map(|((witness, verifier), time)| {
                let url = witness.url.as_deref()?;
                let fresh = time.is_some_and(|t| t.saturating_add(refresh_after) > now_secs);
                (!fresh && !self.backing_off(log_id, verifier)).then_some((url, verifier))
            })
            .map(|(url, verifier)| async move {
                let answer = self
                    .add_checkpoint(store, log_id, size, log_note, url, verifier)
                    .await;
                (url, verifier, answer)
            });
        for (url, verifier, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(line) => note = with_cosignature(&note, verifier.name(), &line),
                Err(error) => {
                    self.note_failure(log_id, verifier);
                    tracing::warn!(
                        log = %log_id, size = current.size, witness = %verifier.name(), %url,
                        "The witness did not cosign: {error:#}"
                    );
                }
            }
        }
        if note != current.note
            && !store
                .replace_checkpoint_note(log_id, current.size, &current.note, &note)
                .await?
        {
            bail!("the checkpoint changed while its witnesses were asked");
        }
        Ok(LogCheckpoint { note, ..current })
    }

    /// One `add-checkpoint` exchange (two if the witness holds another
    /// size than the server thought): the witness's cosignature line.
    async fn add_checkpoint(
        &self,
        store: &Store,
        log_id: &str,
        size: u64,
        log_note: &str,
        url: &str,
        verifier: &CosignatureVerifier,
    ) -> anyhow::Result<String> {
        let key = (log_id.to_owned(), verifier.to_vkey());
        let mut old = self.held_size(&key);
        let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
        for _ in 0..2 {
            if old > size {
                bail!("the witness holds size {old}, above this checkpoint's {size}");
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                store.consistency_proof(log_id, old, size).await?
            };
            let response = self
                .http
                .post(&endpoint)
                .body(request_body(old, &proof, log_note))
                .send()
                .await
                .context("no answer")?;
            let status = response.status().as_u16();
            let text = response.text().await.context("reading the answer")?;
            match status {
                200 => {
                    let line = own_line(&text, verifier.name())
                        .ok_or_else(|| anyhow!("the answer holds no line of this witness"))?;
                    let cosigned = format!("{log_note}{line}");
                    let times = cosignature_times(
                        &cosigned,
                        std::slice::from_ref(verifier),
                        &Limits::default(),
                    )
                    .map_err(|e| anyhow!("the cosignature does not verify: {e}"))?;
                    if times.first().copied().flatten().is_none() {
                        bail!("the answer holds no cosignature of this witness's key");
                    }
                    self.set_held_size(key, size);
                    return Ok(line);
                }
                409 => {
                    old = text
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("a 409 without a size: {text:?}"))?;
                    self.set_held_size(key.clone(), old);
                }
                // The witness holds the tenant's freeze (RFD 0006): agents
                // stop once the last cosignature ages out. Expected while
                // frozen; said as such so nobody debugs the witness.
                423 => bail!(
                    "status 423: it holds the customer's freeze of this tenant and cosigns nothing more until an unfreeze: {}",
                    text.trim()
                ),
                _ => bail!("status {status}: {}", text.trim()),
            }
        }
        bail!("the witness's size kept changing")
    }

    fn backing_off(&self, log_id: &str, verifier: &CosignatureVerifier) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed
            .get(&(log_id.to_owned(), verifier.to_vkey()))
            .is_some_and(|at| at.elapsed() < WITNESS_BACKOFF)
    }

    fn note_failure(&self, log_id: &str, verifier: &CosignatureVerifier) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.insert(
            (log_id.to_owned(), verifier.to_vkey()),
            std::time::Instant::now(),
        );
    }

    fn held_size(&self, key: &(String, String)) -> u64 {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(key).copied().unwrap_or(0)
    }

    fn set_held_size(&self, key: (String, String), size: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(key, size);
    }
}

/// The tenant's policy as the server holds it (checked against the root
/// when it was published; agents check it again).
pub async fn policy_of(store: &Store, tenant_id: &str) -> anyhow::Result<Option<Policy>> {
    let set = store.trust_for_device_tenant(tenant_id).await?;
    let Some((_, bytes)) = set.policy else {
        return Ok(None);
    };
    let limits = Limits::default();
    let signed = Signed::from_bytes(&bytes, &limits).map_err(|e| anyhow!("{e}"))?;
    let policy: Policy = signed.statement(&limits).map_err(|e| anyhow!("{e}"))?;
    Ok(Some(policy))
}

/// `add-checkpoint`'s body: `old N`, the proof hashes in base64, a blank
/// line, the checkpoint.
fn request_body(old: u64, proof: &[bulwark_store::LogHash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&STANDARD.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// The note with only the log's own signature lines (what a witness
/// checks; cosignatures of others are not its business).
fn log_signed_part(note: &str, signer: &LogSigner) -> String {
    let Some((body, lines)) = note.split_once("\n\n") else {
        return note.to_owned();
    };
    let origin = body.lines().next().unwrap_or_default();
    let own = |line: &&str| {
        line.strip_prefix(SIG_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(name, _)| name == origin || name == signer.name())
    };
    let mut out = format!("{body}\n\n");
    for line in lines.lines().filter(own) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The first signature line of `name` in a witness's answer, with its newline.
fn own_line(answer: &str, name: &str) -> Option<String> {
    let prefix = format!("{SIG_PREFIX}{name} ");
    answer
        .lines()
        .find(|line| line.starts_with(&prefix))
        .map(|line| format!("{line}\n"))
}

/// `note` with `line` as the latest cosignature line of witness `name`,
/// keeping that witness's earliest line: the first says since when the
/// witness has seen this head (what a delayed mass action waits on), the
/// latest that it still stands by it (what every job needs).
fn with_cosignature(note: &str, name: &str, line: &str) -> String {
    let prefix = format!("{SIG_PREFIX}{name} ");
    let Some((body, lines)) = note.split_once("\n\n") else {
        return note.to_owned();
    };
    let time = |l: &str| {
        let blob = STANDARD.decode(l.get(prefix.len()..)?.trim()).ok()?;
        Some(u64::from_be_bytes(blob.get(4..12)?.try_into().ok()?))
    };
    let first = lines
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .min_by_key(|l| time(l).unwrap_or(u64::MAX));
    let mut out = format!("{body}\n\n");
    for kept in lines.lines().filter(|l| !l.starts_with(&prefix)) {
        out.push_str(kept);
        out.push('\n');
    }
    if let Some(first) = first
        && time(first) < time(line.trim_end())
    {
        out.push_str(first);
        out.push('\n');
    }
    out.push_str(line);
    out
}

/// Submits every witnessed tenant's latest head, signing one first if the
/// log grew, every [`WITNESS_TICK`]; [`WitnessClient::witness`] asks only
/// where a cosignature is missing or ageing.
pub async fn witness_logs(
    signer: Arc<LogSigner>,
    client: Arc<WitnessClient>,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(WITNESS_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = witness_round(&signer, &client, &store).await {
                    tracing::warn!("Cannot submit tree heads to witnesses: {error:#}");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn witness_round(
    signer: &LogSigner,
    client: &WitnessClient,
    store: &Store,
) -> anyhow::Result<()> {
    for log_id in store.log_ids().await? {
        let Some(witnessing) = policy_of(store, &log_id).await?.and_then(|p| p.witnessing) else {
            continue;
        };
        let now = crate::now_millis();
        let Some(head) = signer.sign_head(store, &log_id, now).await? else {
            continue;
        };
        let now_secs = u64::try_from(now / 1000).unwrap_or(0);
        if let Err(error) = client
            .witness(store, signer, &witnessing, &head, now_secs)
            .await
        {
            tracing::warn!(log = %log_id, "Cannot have the tree head witnessed: {error:#}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str =
        "log.example/bulwark-log/t1\n3\nAAAA\n\n\u{2014} log.example/bulwark-log/t1 sig1\n";

    fn line(name: &str, time: u64) -> String {
        let mut blob = vec![0u8; 4];
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&[0u8; 64]);
        format!("{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
    }

    #[test]
    fn a_witness_keeps_its_first_and_latest_line() {
        let once = with_cosignature(NOTE, "w1", &line("w1", 10));
        assert_eq!(once, format!("{NOTE}{}", line("w1", 10)));
        let other = with_cosignature(&once, "w2", &line("w2", 11));
        let twice = with_cosignature(&other, "w1", &line("w1", 20));
        assert_eq!(
            twice,
            format!(
                "{NOTE}{}{}{}",
                line("w2", 11),
                line("w1", 10),
                line("w1", 20)
            )
        );
        // A third: the first stays, the middle one goes.
        let thrice = with_cosignature(&twice, "w1", &line("w1", 30));
        assert_eq!(
            thrice,
            format!(
                "{NOTE}{}{}{}",
                line("w2", 11),
                line("w1", 10),
                line("w1", 30)
            )
        );
        // A witness whose name is a prefix of another's leaves that one alone.
        let prefixed = with_cosignature(&thrice, "w", &line("w", 40));
        assert!(prefixed.contains(&line("w1", 30)));
        assert!(prefixed.contains(&line("w2", 11)));
    }

    #[test]
    fn own_line_picks_the_named_witness() {
        let answer = "\u{2014} other abc\n\u{2014} w1 def\n";
        assert_eq!(own_line(answer, "w1").as_deref(), Some("\u{2014} w1 def\n"));
        assert_eq!(own_line(answer, "w"), None);
    }

    #[test]
    fn the_request_has_old_proof_blank_line_and_note() {
        let body = request_body(2, &[[1u8; 32], [2u8; 32]], NOTE);
        let mut lines = body.lines();
        assert_eq!(lines.next(), Some("old 2"));
        assert_eq!(lines.next(), Some(STANDARD.encode([1u8; 32]).as_str()));
        assert_eq!(lines.next(), Some(STANDARD.encode([2u8; 32]).as_str()));
        assert_eq!(lines.next(), Some(""));
        assert!(body.ends_with(NOTE));
    }
}
