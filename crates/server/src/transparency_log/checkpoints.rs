//! The transparency log's signing key and its signed tree heads (RFD 0003,
//! "Tree heads").
//!
//! The log key is an Ed25519 key in the data directory (`log/log.skey`, Go's
//! signer-key text, 0600), made on first start. It signs C2SP checkpoints,
//! one origin per log: `<key name>/<tenant id>`, or `<key name>/msp`.
//! Agents pin its public half at enrolment. The key proves nothing about
//! honesty (whoever owns the server holds it): what protects agents and
//! auditors is that every head they accept must extend the last one they
//! hold, so a second history signed with the same key is caught.
//!
//! Heads are signed on demand (a job's delivery needs one covering its
//! entry) and every [`CHECKPOINT_INTERVAL`] for every log that grew, so an
//! auditor always finds a recent one.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bulwark_policy::log::log_origin;
use bulwark_store::{LogCheckpoint, Store, StoreError};
use bulwark_translog::{Checkpoint, Hash, NoteSigner, NoteVerifier};
use tokio::sync::watch;

use crate::datadir::{create_private_dir, write_private_file};

/// How often grown logs get a new signed tree head.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// The log key and the checkpoints it signs.
pub struct LogSigner {
    signer: NoteSigner,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSigner({})", self.signer.name())
    }
}

impl LogSigner {
    /// Loads `data_dir/log/log.skey`, or makes it (named `<host>/bulwark-log`,
    /// `host` the first public hostname, else `localhost`).
    pub fn load_or_create(data_dir: &Path, hostnames: &[String]) -> anyhow::Result<Self> {
        let dir = data_dir.join("log");
        create_private_dir(&dir)?;
        let path = dir.join("log.skey");
        if !path.exists() {
            let host = hostnames.first().map_or("localhost", String::as_str);
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let signer = NoteSigner::new(&format!("{host}/bulwark-log"), key)
                .map_err(|e| anyhow::anyhow!("cannot name the log key after {host:?}: {e}"))?;
            write_private_file(&path, signer.to_skey().as_bytes())?;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the log key {}", path.display()))?;
        let signer = NoteSigner::from_skey(text.trim())
            .map_err(|e| anyhow::anyhow!("the log key {} is unreadable: {e}", path.display()))?;
        Ok(Self { signer })
    }

    /// A signer with a key of the caller's (tests and benchmarks).
    pub fn from_signer(signer: NoteSigner) -> Self {
        Self { signer }
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The public key as Go's verifier-key text, what agents and auditors pin.
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    /// The log key's name (origins are `<name>/<log id>`).
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The origin line of `log_id`'s checkpoints.
    pub fn origin(&self, log_id: &str) -> String {
        log_origin(self.signer.name(), log_id)
    }

    /// A signed tree head of `log_id` covering at least `min_size` entries:
    /// the latest stored one if it does, else one signed now over the log's
    /// current head. `Invalid` if the log has fewer than `min_size` entries.
    pub async fn checkpoint_covering(
        &self,
        store: &Store,
        log_id: &str,
        min_size: u64,
        now: i64,
    ) -> Result<LogCheckpoint, StoreError> {
        if let Some(latest) = store.latest_checkpoint(log_id).await?
            && latest.size >= min_size
        {
            return Ok(latest);
        }
        let signed = self.sign_head(store, log_id, now).await?;
        match signed {
            Some(checkpoint) if checkpoint.size >= min_size => Ok(checkpoint),
            _ => Err(StoreError::Invalid("the log has not reached that size")),
        }
    }

    /// Signs and stores a tree head over `log_id`'s current head, unless one
    /// of that size exists (then returns it). `None` for a log with no head.
    pub async fn sign_head(
        &self,
        store: &Store,
        log_id: &str,
        now: i64,
    ) -> Result<Option<LogCheckpoint>, StoreError> {
        let Some(head) = store.log_head(log_id).await? else {
            return Ok(None);
        };
        if let Some(existing) = store.checkpoint_at(log_id, head.size).await? {
            return Ok(Some(existing));
        }
        let checkpoint = Checkpoint::new(self.origin(log_id), head.size, Hash(head.root), vec![])
            .map_err(|e| StoreError::Invalid(leak_reason(e)))?;
        let note = checkpoint
            .sign_as_log(&self.signer)
            .map_err(|e| StoreError::Invalid(leak_reason(e)))?;
        match store.add_checkpoint(log_id, head.size, &note, now).await {
            Ok(()) => {}
            // Another task signed the same size first: same tree, keep theirs.
            Err(StoreError::Conflict(_)) => {}
            Err(other) => return Err(other),
        }
        store.checkpoint_at(log_id, head.size).await
    }

    /// Signs and stores a tree head of `log_id` at exactly `size` (at most
    /// the log's size; its root from the stored subtrees), unless one of
    /// that size exists (then returns it). Retention signs one at the end of
    /// each archived range, so an archive is checked against a head of its
    /// own size.
    pub async fn sign_head_at(
        &self,
        store: &Store,
        log_id: &str,
        size: u64,
        now: i64,
    ) -> Result<LogCheckpoint, StoreError> {
        if let Some(existing) = store.checkpoint_at(log_id, size).await? {
            return Ok(existing);
        }
        let root = store.log_root_at(log_id, size).await?;
        let checkpoint = Checkpoint::new(self.origin(log_id), size, Hash(root), vec![])
            .map_err(|e| StoreError::Invalid(leak_reason(e)))?;
        let note = checkpoint
            .sign_as_log(&self.signer)
            .map_err(|e| StoreError::Invalid(leak_reason(e)))?;
        match store.add_checkpoint(log_id, size, &note, now).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(other) => return Err(other),
        }
        store
            .checkpoint_at(log_id, size)
            .await?
            .ok_or(StoreError::Corrupt("a checkpoint vanished".to_owned()))
    }
}

fn leak_reason(error: bulwark_translog::NoteError) -> &'static str {
    tracing::error!(%error, "Cannot form a checkpoint.");
    "the checkpoint cannot be formed"
}

/// Signs a tree head for every log that grew, every [`CHECKPOINT_INTERVAL`].
pub async fn sign_grown_logs(
    signer: std::sync::Arc<LogSigner>,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let logs = match store.logs_without_current_checkpoint().await {
                    Ok(logs) => logs,
                    Err(error) => {
                        tracing::warn!(%error, "Cannot list the logs to sign.");
                        continue;
                    }
                };
                for log_id in logs {
                    if let Err(error) = signer.sign_head(&store, &log_id, crate::now_millis()).await {
                        tracing::warn!(%error, log = %log_id, "Cannot sign a tree head.");
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
