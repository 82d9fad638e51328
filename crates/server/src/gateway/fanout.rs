//! What a fan-out shares between the sessions it wakes (issue 18): a job
//! sent to 10,000 connected agents must not cost 10,000 transactions nor
//! 10,000 computations of the same log proof.
//!
//! - [`Recorder`] group-commits deliveries: each session still waits for
//!   its own delivery to be stored before it reads the agent's next frame
//!   (so a result never overtakes its `job.delivered`), but the sessions
//!   woken together share one transaction per batch, and the events of one
//!   tenant's log one append.
//! - [`ProofCache`] computes each job's inclusion proof under a tree head,
//!   and each consistency proof between two sizes, once. A log only grows,
//!   so these are facts of the tree, not state that can go stale; the agent
//!   checks every proof itself anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bulwark_store::{Delivery, Store, StoreError};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tracing::warn;

/// Most deliveries in one transaction.
pub(super) const MAX_BATCH: usize = 1000;

/// Deliveries queued for the recorder before a session waits to queue.
const QUEUE: usize = 4 * MAX_BATCH;

type Reply = oneshot::Sender<Result<bool, String>>;

/// Hands deliveries to one task that stores whatever has queued up in one
/// transaction.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<(Delivery, Reply)>,
}

impl Recorder {
    /// Starts the recording task (it ends when every `Recorder` is dropped).
    pub fn start(store: Store) -> Recorder {
        let (queue, mut incoming) = mpsc::channel::<(Delivery, Reply)>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while incoming.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (deliveries, replies): (Vec<Delivery>, Vec<Reply>) =
                    std::mem::take(&mut batch).into_iter().unzip();
                match store.mark_delivered_many(&deliveries).await {
                    Ok(first) => {
                        for (reply, first) in replies.into_iter().zip(first) {
                            let _ = reply.send(Ok(first));
                        }
                    }
                    Err(error) => {
                        warn!(%error, deliveries = deliveries.len(), "Cannot record a batch of deliveries.");
                        let error = error.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Recorder { queue }
    }

    /// Records one delivery with the others queued now; true if it was
    /// the first of that job to that device.
    pub async fn record(&self, delivery: Delivery) -> anyhow::Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((delivery, reply))
            .await
            .map_err(|_| anyhow::anyhow!("the delivery recorder has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the delivery recorder has stopped"))?
            .map_err(|error| anyhow::anyhow!("cannot record a delivery: {error}"))
    }
}

/// Most proofs kept; past it the cache starts again (a fan-out needs a few).
const MAX_PROOFS: usize = 4096;

/// An entry's leaf and inclusion proof under a tree size.
pub(super) type Inclusion = (Vec<u8>, Vec<u8>);

type Cell<T> = Arc<OnceCell<T>>;

/// Proofs by (log id, first size or index, tree size).
type Cells<T> = Mutex<HashMap<(String, u64, u64), Cell<T>>>;

/// Log proofs computed once for every session that needs them; concurrent
/// askers wait for the first one's answer. Errors are not kept.
#[derive(Default)]
pub struct ProofCache {
    inclusions: Cells<Inclusion>,
    consistencies: Cells<Vec<u8>>,
}

fn cell<T>(map: &Cells<T>, key: (String, u64, u64)) -> Cell<T> {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if map.len() >= MAX_PROOFS && !map.contains_key(&key) {
        map.clear();
    }
    map.entry(key).or_default().clone()
}

impl ProofCache {
    /// Entry `idx` of `log_id` and its inclusion proof in the tree of
    /// `size` (empty if the store cannot give one: the agent refuses).
    pub(super) async fn inclusion(
        &self,
        store: &Store,
        log_id: &str,
        idx: u64,
        size: u64,
    ) -> Result<Inclusion, StoreError> {
        let cell = cell(&self.inclusions, (log_id.to_owned(), idx, size));
        cell.get_or_try_init(|| async {
            let leaf = store
                .log_entries(log_id, idx, 1)
                .await?
                .into_iter()
                .next()
                .map(|entry| entry.leaf)
                .unwrap_or_default();
            let proof = match store.inclusion_proof(log_id, idx, size).await {
                Ok(proof) => proof.concat(),
                Err(StoreError::Invalid(_)) => Vec::new(),
                Err(other) => return Err(other),
            };
            Ok((leaf, proof))
        })
        .await
        .cloned()
    }

    /// The consistency proof of `log_id` from size `from` to `to` (empty
    /// when there is none to give).
    pub(super) async fn consistency(
        &self,
        store: &Store,
        log_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u8>, StoreError> {
        if from == 0 || from >= to {
            return Ok(Vec::new());
        }
        let cell = cell(&self.consistencies, (log_id.to_owned(), from, to));
        cell.get_or_try_init(|| async {
            match store.consistency_proof(log_id, from, to).await {
                Ok(proof) => Ok(proof.concat()),
                Err(StoreError::Invalid(_)) => Ok(Vec::new()),
                Err(other) => Err(other),
            }
        })
        .await
        .cloned()
    }
}
