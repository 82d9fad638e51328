//! What the agent keeps on disk about jobs: the history of every job id and
//! nonce it accepted (fsynced before a script starts), and the spool of
//! results until the server acknowledges them (then `done/`, to answer a
//! redelivery with the recorded result).

use super::*;

/// How many acknowledged results `jobs/done/` keeps.
pub const DONE_KEPT: usize = 1024;

pub(super) const RECORD: usize = 32;

/// The job ids and nonces this agent has accepted, over `jobs/history`.
#[derive(Debug)]
pub struct History {
    pub(super) file: File,
    pub(super) ids: HashSet<[u8; 16]>,
    pub(super) nonces: HashSet<[u8; 16]>,
    pub(super) records: HashSet<[u8; RECORD]>,
}

impl History {
    /// Opens (or creates) the history file and reads every record.
    pub fn open(path: &Path) -> io::Result<Self> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        if !existed && let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() - bytes.len() % RECORD;
        if whole != bytes.len() {
            // A record cut short by a crash: its job never started (a job
            // starts only once its record is on disk). Drop the fragment so
            // the next record starts on a record boundary.
            warn!(
                path = %path.display(),
                "The job history ends with a partial record; removing it."
            );
            file.set_len(u64::try_from(whole).unwrap_or(u64::MAX))?;
            file.sync_all()?;
        }
        let mut ids = HashSet::new();
        let mut nonces = HashSet::new();
        let mut records = HashSet::new();
        for record in bytes[..whole].chunks_exact(RECORD) {
            let (id, nonce) = record.split_at(16);
            ids.insert(id.try_into().unwrap_or_default());
            nonces.insert(nonce.try_into().unwrap_or_default());
            records.insert(record.try_into().unwrap_or([0; RECORD]));
        }
        Ok(Self {
            file,
            ids,
            nonces,
            records,
        })
    }

    /// Appends a record and waits until it is on disk.
    pub fn record(&mut self, job_id: &[u8; 16], nonce: &[u8; 16]) -> io::Result<()> {
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(job_id);
        record[16..].copy_from_slice(nonce);
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.ids.insert(*job_id);
        self.nonces.insert(*nonce);
        self.records.insert(record);
        Ok(())
    }
}

impl History {
    /// Whether this very job (its id with its nonce) was accepted before: a
    /// redelivery, as opposed to a replay (another job reusing either).
    pub fn ran(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool {
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(job_id);
        record[16..].copy_from_slice(nonce);
        self.records.contains(&record)
    }
}

impl JobHistory for History {
    fn seen(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool {
        self.ids.contains(job_id) || self.nonces.contains(nonce)
    }
}

/// Results not yet acknowledged, over `jobs/results/`, and the last
/// acknowledged ones, over `jobs/done/`.
#[derive(Debug, Clone)]
pub struct ResultSpool {
    pub(super) dir: PathBuf,
    pub(super) done: PathBuf,
    /// Where a log-alarm refusal is also recorded as it is spooled: every
    /// refusal the server must raise `alert.log_refused` for passes here.
    pub(super) alarms: Option<AlarmLog>,
}

impl ResultSpool {
    /// `dir` holds the spool; its sibling `done` the acknowledged results.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        private_dir(&dir)?;
        let done = dir.with_file_name("done");
        private_dir(&done)?;
        Ok(Self {
            dir,
            done,
            alarms: None,
        })
    }

    /// Also records the log alarms it spools in `alarms`.
    pub fn with_alarms(mut self, alarms: AlarmLog) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// The recorded result of a job whose result was acknowledged.
    pub fn done(&self, job_id: &[u8; 16]) -> Option<JobResult> {
        let bytes = std::fs::read(self.done.join(format!("{}.cbor", hex::encode(job_id)))).ok()?;
        from_canonical::<JobResult>(&bytes)
            .ok()
            .filter(|r| r.job_id == *job_id)
    }

    /// Moves an acknowledged result to `done/` (keeping the newest
    /// [`DONE_KEPT`]); `false` if there was none.
    pub fn acknowledge(&self, job_id: &[u8; 16]) -> io::Result<bool> {
        let name = format!("{}.cbor", hex::encode(job_id));
        match std::fs::rename(self.dir.join(&name), self.done.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        sync_dir(&self.done)?;
        sync_dir(&self.dir)?;
        let mut kept: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(&self.done)?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if kept.len() > DONE_KEPT {
            kept.sort();
            for (_, path) in &kept[..kept.len() - DONE_KEPT] {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(true)
    }

    pub(super) fn path(&self, job_id: &[u8; 16]) -> PathBuf {
        self.dir.join(format!("{}.cbor", hex::encode(job_id)))
    }

    /// Stores (or replaces) the result of its job, durably.
    pub fn put(&self, result: &JobResult) -> io::Result<()> {
        let first = !self.contains(&result.job_id);
        write_atomic(&self.path(&result.job_id), &to_canonical(result), 0o600)?;
        if first && let Some(alarms) = &self.alarms {
            alarms.job_result(result, super::now_ms());
        }
        Ok(())
    }

    pub fn contains(&self, job_id: &[u8; 16]) -> bool {
        self.path(job_id).exists()
    }

    /// Every spooled result, by job id. A file that does not decode is
    /// logged and left for a person to look at.
    pub fn all(&self) -> io::Result<Vec<JobResult>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension() == Some(OsStr::new("cbor")))
            .collect();
        paths.sort();
        let mut results = Vec::with_capacity(paths.len());
        for path in paths {
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| from_canonical::<JobResult>(&bytes).map_err(|e| e.to_string()));
            match decoded {
                Ok(result) if path.file_stem() == Some(OsStr::new(&hex::encode(result.job_id))) => {
                    results.push(result);
                }
                Ok(_) => {
                    warn!(path = %path.display(), "A spooled result is named after another job; skipped.")
                }
                Err(error) => {
                    warn!(path = %path.display(), %error, "A spooled result cannot be read; skipped.")
                }
            }
        }
        Ok(results)
    }
}
