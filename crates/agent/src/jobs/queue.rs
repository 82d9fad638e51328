//! The queue between connections and the one job runner: one copy of a job
//! per session, stale sessions dropped, and the answers that are not results
//! (`agent_busy`, `log_head_stale`).

use super::*;

/// Jobs waiting behind the running one; more are answered
/// [`AgentRefusalCode::AgentBusy`] (not a result: the server sends them
/// again).
pub const MAX_QUEUED_JOBS: usize = 16;

/// Answers that are sent once, to the session that delivered the job, and
/// never spooled.
#[derive(Clone, Default)]
pub(super) struct Answers(Arc<Mutex<Vec<(u64, JobResult)>>>);

impl Answers {
    pub(super) fn push(&self, session: u64, answer: JobResult) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((session, answer));
    }

    /// The answers for `session`; those for ended sessions are dropped.
    pub(super) fn take(&self, session: u64) -> Vec<JobResult> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .filter_map(|(s, answer)| (s == session).then_some(answer))
            .collect()
    }
}

/// What the runner takes: a job, or an occurrence of a schedule (RFD 0019).
pub(super) enum Work {
    Job(Job),
    Scheduled(ScheduledRun),
}

impl Work {
    /// The id its result is reported under, if it can be read at all.
    fn job_id(&self, limits: &Limits) -> Option<[u8; 16]> {
        match self {
            Work::Job(job) => job_id_of(job, limits),
            Work::Scheduled(run) => Some(run.job_id),
        }
    }

    fn log(&self) -> Option<&bulwark_protocol::message::LogProof> {
        match self {
            Work::Job(job) => job.log.as_ref(),
            Work::Scheduled(run) => run.log.as_ref(),
        }
    }
}

/// Work waiting for the runner, with the session that delivered it.
pub(super) struct Queued {
    pub(super) work: Work,
    pub(super) session: u64,
    pub(super) job_id: Option<[u8; 16]>,
}

/// The session's side of the job runner: queue jobs, apply trust, read and
/// acknowledge results. Cheap to clone.
#[derive(Clone)]
pub struct JobsHandle {
    pub(super) queue: mpsc::Sender<Queued>,
    /// Job ids queued or running, with the session that delivered them: a
    /// second delivery in the same session is ignored.
    pub(super) held: Arc<Mutex<HashMap<[u8; 16], u64>>>,
    pub(super) session: Arc<AtomicU64>,
    pub(super) answers: Answers,
    pub(super) spooled: Arc<watch::Sender<u64>>,
    pub(super) refresh: Arc<watch::Sender<u64>>,
    pub(super) trust: Arc<Mutex<TrustState>>,
    pub(super) spool: ResultSpool,
    pub(super) state_dir: PathBuf,
    pub(super) limits: Limits,
    pub(super) live: LiveLink,
}

impl std::fmt::Debug for JobsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsHandle")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

pub(super) fn held_ids(
    held: &Mutex<HashMap<[u8; 16], u64>>,
) -> MutexGuard<'_, HashMap<[u8; 16], u64>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the job runner: returns the handle sessions use and the task to
/// spawn (it ends when every handle is dropped).
pub fn start(mut runner: JobRunner) -> (JobsHandle, impl Future<Output = ()> + Send + 'static) {
    let (queue, mut jobs) = mpsc::channel::<Queued>(MAX_QUEUED_JOBS);
    let spooled = Arc::new(watch::Sender::new(0u64));
    let held = Arc::new(Mutex::new(HashMap::new()));
    let handle = JobsHandle {
        queue,
        held: held.clone(),
        session: runner.session.clone(),
        answers: runner.answers.clone(),
        spooled: spooled.clone(),
        refresh: runner.refresh.clone(),
        trust: runner.trust.clone(),
        spool: runner.spool.clone(),
        state_dir: runner.state_dir.clone(),
        limits: runner.limits.clone(),
        live: runner.live.clone(),
    };
    let worker = async move {
        if runner.finish_outlived().await > 0 {
            spooled.send_modify(|n| *n = n.wrapping_add(1));
        }
        while let Some(queued) = jobs.recv().await {
            let result = match &queued.work {
                Work::Job(job) => runner.process_from(job, queued.session).await,
                Work::Scheduled(run) => runner.process_scheduled(run, queued.session).await,
            };
            if let Some(id) = &queued.job_id {
                let mut held = held_ids(&held);
                if held.get(id) == Some(&queued.session) {
                    held.remove(id);
                    runner.live.forget(id);
                }
            }
            if result.is_some() {
                spooled.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    };
    (handle, worker)
}

impl JobsHandle {
    /// A new connection: jobs queued by earlier ones are dropped unread
    /// (the server sends them again, with proofs from the head held now).
    /// Returns the size of the tree head held, which the `Hello` announces;
    /// read under the lock that verification takes, so no job of an earlier
    /// connection moves the head after it is announced.
    pub fn begin_session(&self) -> Option<u64> {
        let trust = lock(&self.trust);
        self.session.fetch_add(1, Ordering::SeqCst);
        trust.log_size()
    }

    /// Queues a job behind the running one. A job already queued or running
    /// is ignored. `Some` is an answer to send now, not spooled: the queue
    /// is full, and the server sends the job again after the next result.
    pub fn submit(&self, job: Job) -> Option<JobResult> {
        self.submit_work(Work::Job(job))
    }

    /// Queues an occurrence of a schedule (protocol version 6), as a job.
    pub fn submit_scheduled(&self, run: ScheduledRun) -> Option<JobResult> {
        self.submit_work(Work::Scheduled(run))
    }

    fn submit_work(&self, work: Work) -> Option<JobResult> {
        let job_id = work.job_id(&self.limits);
        let session = self.session.load(Ordering::SeqCst);
        // A copy from an ended session is dropped unread: this one replaces it.
        if let Some(id) = &job_id
            && held_ids(&self.held).insert(*id, session) == Some(session)
        {
            debug!(job_id = %hex::encode(id), "This job is already queued or running; the second delivery is ignored.");
            return None;
        }
        let queued = Queued {
            work,
            session,
            job_id,
        };
        match self.queue.try_send(queued) {
            Ok(()) => None,
            Err(TrySendError::Full(queued)) => {
                if let Some(id) = &queued.job_id {
                    let mut held = held_ids(&self.held);
                    if held.get(id) == Some(&queued.session) {
                        held.remove(id);
                    }
                }
                self.move_to_head_of(&queued.work);
                let id = queued.job_id?;
                info!(job_id = %hex::encode(id), "{MAX_QUEUED_JOBS} jobs are already waiting; the server sends this one again later.");
                Some(refused(
                    id,
                    AgentRefusalCode::AgentBusy,
                    &format!("{MAX_QUEUED_JOBS} jobs are already waiting; this one was not read"),
                ))
            }
            Err(TrySendError::Closed(queued)) => {
                self.refuse_now(
                    &queued.work,
                    AgentRefusalCode::AgentError,
                    "the agent's job runner has stopped",
                );
                None
            }
        }
    }

    /// A job refused unread still moves the agent to its tree head (if
    /// valid), as the server assumes: else the next job's consistency proof
    /// would start from a size the agent does not hold.
    pub(super) fn move_to_head_of(&self, work: &Work) {
        if let Some(wire) = work.log() {
            let mut trust = lock(&self.trust);
            if let Some(tenant) = trust.tenant().map(str::to_owned)
                && let Err(refusal) = accept_log_head(
                    &mut trust,
                    &self.state_dir,
                    &tenant,
                    &job_log_proof(wire),
                    &self.limits,
                )
            {
                // A stale proof start is corrected when the job comes again.
                warn!(code = %refusal.code(), reason = %refusal, "The tree head of a job refused unread is not taken.");
            }
        }
    }

    pub(super) fn refuse_now(&self, work: &Work, code: AgentRefusalCode, reason: &str) {
        self.move_to_head_of(work);
        let Some(job_id) = work.job_id(&self.limits) else {
            warn!(%code, reason, "Dropped a job whose envelope cannot be read.");
            return;
        };
        warn!(job_id = %hex::encode(job_id), %code, reason, "Refused a job.");
        match self.spool.put(&refused(job_id, code, reason)) {
            Ok(()) => self.spooled.send_modify(|n| *n = n.wrapping_add(1)),
            Err(error) => error!(%error, "Cannot spool a job result."),
        }
    }

    /// Applies a `Trust` message and saves what was accepted; returns the
    /// refusals to report and the status to send.
    pub fn apply_trust(&self, update: &Trust) -> (Vec<TrustRefused>, TrustStatus) {
        let mut trust = lock(&self.trust);
        let outcomes = trust.apply(update, now_secs(), &self.limits);
        if outcomes
            .iter()
            .any(|o| matches!(o, TrustOutcome::Accepted { .. }))
            && let Err(error) = trust.save(&self.state_dir)
        {
            error!(%error, "Cannot save the accepted trust statements; they hold until the agent restarts.");
        }
        let refusals: Vec<TrustRefused> = outcomes
            .iter()
            .filter_map(crate::trust::refusal_report)
            .collect();
        if let Some(alarms) = &self.spool.alarms {
            if let Some(tenant) = trust.history.tenant() {
                alarms.set_tenant(tenant);
            }
            for refusal in &refusals {
                alarms.trust_refused(refusal, now_ms());
            }
        }
        (refusals, trust.status())
    }

    /// The server stored this result.
    pub fn acknowledge(&self, job_id: &[u8; 16]) {
        match self.spool.acknowledge(job_id) {
            Ok(true) => debug!(job_id = %hex::encode(job_id), "Job result acknowledged."),
            Ok(false) => {
                debug!(job_id = %hex::encode(job_id), "Acknowledgement for a result not in the spool.")
            }
            Err(error) => warn!(%error, "Cannot remove an acknowledged job result."),
        }
    }

    /// Spools a result made outside the job runner (an agent update's
    /// outcome, known only after the restart) and has it sent.
    pub fn spool_result(&self, result: &JobResult) -> io::Result<()> {
        self.spool.put(result)?;
        self.spooled.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Every result waiting for an acknowledgement.
    pub fn pending_results(&self) -> Vec<JobResult> {
        self.spool.all().unwrap_or_else(|error| {
            warn!(%error, "Cannot read the job result spool.");
            Vec::new()
        })
    }

    /// The server cancelled a job (protocol version 3, RFD 0012). Only a
    /// job held now (queued or running) is marked: a waiting one is then
    /// answered `cancelled`, a running script is killed (not an apt run).
    /// A cancel makes nothing run, so it needs no signature.
    pub fn cancel(&self, job_id: &[u8; 16], reason: &str) {
        let id = hex::encode(job_id);
        if held_ids(&self.held).contains_key(job_id) {
            info!(job_id = %id, reason, "The server cancelled a job.");
            self.live.cancel(*job_id);
        } else {
            debug!(job_id = %id, "A cancel for a job this agent does not hold; ignored.");
        }
    }

    /// A version 3 connection takes start notices and output pieces
    /// until the returned hold is dropped.
    pub async fn attach_live(&self) -> Attached {
        self.live.attach().await
    }

    /// Temporary answers ([`AgentRefusalCode::LogHeadStale`]) for this
    /// session, each returned once: sent now, never spooled.
    pub fn take_answers(&self) -> Vec<JobResult> {
        self.answers.take(self.session.load(Ordering::SeqCst))
    }

    /// Changes whenever a result is spooled or an answer waits.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.spooled.subscribe()
    }

    /// Changes whenever a verified inventory-refresh job asks for a full snapshot.
    pub fn subscribe_refresh(&self) -> watch::Receiver<u64> {
        self.refresh.subscribe()
    }

    pub fn trust_status(&self) -> TrustStatus {
        lock(&self.trust).status()
    }

    /// The size of the log tree head this agent holds (sent in `Hello`).
    pub fn log_size(&self) -> Option<u64> {
        lock(&self.trust).log_size()
    }
}
