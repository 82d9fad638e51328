//! Scheduled runs on the agent (RFD 0019, protocol version 6): the server
//! says "run occurrence `T` of this signed schedule"; the agent decides
//! itself (`bulwark_policy::log::decide_occurrence`: the signatures under
//! its current policy, `T` an occurrence in the signed zone by its own tz
//! database and clock, never twice, the schedule in the tenant's log),
//! records the occurrence in `jobs/schedules` before it starts, and runs it
//! as the job `run_job_id(schedule, T)` through the job runner: its result
//! is a job result, spooled and re-sent until acknowledged.

use super::*;
use bulwark_policy::log::decide_occurrence;
use bulwark_policy::schedule::{RunRequest, VerifiedRun};

impl JobRunner {
    /// The decision on one occurrence under the trust held now; `None` when
    /// it came from a session that has ended (as [`JobRunner::verify`]).
    fn verify_scheduled(
        &self,
        signed: &Signed,
        run: &ScheduledRun,
        session: u64,
    ) -> Option<Result<VerifiedRun, Refusal>> {
        let mut trust = lock(&self.trust);
        if self.session.load(Ordering::SeqCst) != session {
            return None;
        }
        let Some(tenant) = trust.tenant().map(str::to_owned) else {
            return Some(Err(Refusal::NoPolicy));
        };
        let Some(policy) = trust.history.policy() else {
            return Some(Err(Refusal::NoPolicy));
        };
        let proof = run.log.as_ref().map(job_log_proof);
        let hostname = current_hostname();
        let decision = decide_occurrence(
            RunRequest {
                signed,
                script: &run.script,
                occurrence: run.occurrence,
            },
            proof.as_ref(),
            AgentContext {
                tenant: &tenant,
                device_id: &self.device_id,
                hostname: &hostname,
                device_key: &self.device_key,
                policy,
                freeze: trust.history.freeze(),
            },
            LogContext {
                key: trust.log_key.as_ref(),
                held: trust.log_head.as_ref().map(|(_, head)| head),
            },
            local_zone,
            &self.schedule_runs,
            now_secs(),
            &self.limits,
        );
        if let (Some(head), Some(proof)) = (decision.new_head, &proof)
            && let Err(refusal) = keep_head(&mut trust, &self.state_dir, proof, head)
        {
            return Some(Err(refusal));
        }
        Some(decision.verdict)
    }

    /// [`JobRunner::process`] for an occurrence of a schedule (RFD 0019).
    pub async fn process_run(&mut self, run: &ScheduledRun) -> Option<JobResult> {
        let session = self.session.load(Ordering::SeqCst);
        self.process_scheduled(run, session).await
    }

    /// Verifies an occurrence, runs it if it passes, and spools the result
    /// under the server's job id for it (a refusal is a result too). `None`
    /// when there is nothing to report (an earlier session's delivery, or
    /// an occurrence that ran and whose result is spooled or acknowledged).
    pub(super) async fn process_scheduled(
        &mut self,
        run: &ScheduledRun,
        session: u64,
    ) -> Option<JobResult> {
        let job_id = run.job_id;
        let id = hex::encode(job_id);
        let decision = Signed::from_bytes(&run.envelope, &self.limits)
            .map(|signed| (self.verify_scheduled(&signed, run, session), signed));
        let outcome = match decision {
            Err(refusal) => {
                warn!(job_id = %id, code = %refusal.code(), reason = %refusal, "Refused a scheduled run.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
            }
            Ok((None, _)) => {
                info!(job_id = %id, "Dropped a scheduled run delivered by an earlier connection; the server sends it again.");
                return None;
            }
            // This very occurrence again: it ran (its record is on disk
            // before it starts), so it is answered with what it did.
            Ok((Some(Err(Refusal::Replayed)), _)) if self.spool.contains(&job_id) => {
                info!(job_id = %id, "This occurrence already ran; its result is spooled and will be sent again.");
                return None;
            }
            Ok((Some(Err(Refusal::Replayed)), _)) if self.spool.done(&job_id).is_some() => {
                info!(job_id = %id, "This occurrence already ran; sending its recorded result again.");
                self.spool.done(&job_id)?.outcome
            }
            Ok((Some(Err(Refusal::LogHeadStale { held, from })), _)) => {
                info!(job_id = %id, held, from, "The scheduled run's consistency proof starts from a tree size this agent does not hold; the server sends it again.");
                let mut answer = refused(
                    job_id,
                    AgentRefusalCode::LogHeadStale,
                    &format!(
                        "the consistency proof starts at size {from}, the agent holds size {held}"
                    ),
                );
                if let JobOutcome::Refused(r) = &mut answer.outcome {
                    r.log_size = Some(held);
                }
                self.answers.push(session, answer.clone());
                return Some(answer);
            }
            Ok((Some(Err(refusal)), _)) => {
                warn!(job_id = %id, code = %refusal.code(), reason = %refusal, "Refused a scheduled run.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
            }
            Ok((Some(Ok(verified)), _)) if verified.job.job_id != job_id => {
                let refusal = Refusal::Malformed(
                    "the server's job id for this run is not its occurrence's".into(),
                );
                warn!(job_id = %id, code = %refusal.code(), reason = %refusal, "Refused a scheduled run.");
                refused(job_id, refusal.code(), &refusal.to_string()).outcome
            }
            Ok((Some(Ok(_)), _)) if self.live.is_cancelled(&job_id) => {
                info!(job_id = %id, "The server cancelled this run before it started; not running it.");
                refused(
                    job_id,
                    AgentRefusalCode::Cancelled,
                    "cancelled before it started; it did not run",
                )
                .outcome
            }
            Ok((Some(Ok(verified)), _)) => {
                // Never twice, even across a crash: on disk before it starts.
                let schedule_id = verified.schedule.schedule_id;
                match self.schedule_runs.record(&schedule_id, verified.occurrence) {
                    Err(error) => {
                        error!(job_id = %id, %error, "Cannot record the scheduled run; not running it.");
                        refused(
                            job_id,
                            AgentRefusalCode::AgentError,
                            &format!("cannot record the run before starting it: {error}"),
                        )
                        .outcome
                    }
                    Ok(()) => {
                        info!(job_id = %id, schedule = %hex::encode(schedule_id), occurrence = verified.occurrence, "Running a verified scheduled run.");
                        let job = VerifiedJob {
                            statement: verified.job,
                            class: verified.class,
                            signers: verified.signers,
                        };
                        self.run(&id, job, &run.script).await
                    }
                }
            }
        };
        let result = JobResult { job_id, outcome };
        match self.spool.put(&result) {
            Ok(()) => remove_run_files(&self.run_dir, &job_id),
            Err(error) => {
                error!(job_id = %id, %error, "Cannot spool a scheduled run's result; its files stay, and the next start reports it as interrupted.");
            }
        }
        Some(result)
    }
}
